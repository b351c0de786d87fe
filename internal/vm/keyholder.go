package vm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Keyholder is the keyholder's verb API as the web uses it; *ipc.Client in
// the web.
type Keyholder interface {
	Verbs(ctx context.Context) (VerbList, error)
	Run(ctx context.Context, verb, actor string) (Result, error)
}

// VerbList is the keyholder's GET /v1/verbs answer.
type VerbList struct {
	VMID  int        `json:"vmid"`
	Verbs []VerbInfo `json:"verbs"`
}

// VerbInfo is one row of VerbList.
type VerbInfo struct {
	Name     string `json:"name"`
	Mutating bool   `json:"mutating"`
}

// Result is what a verb that ran returned (exit code may be non-zero).
type Result struct {
	Verb       string `json:"verb"`
	VMID       int    `json:"vmid"`
	ExitCode   int    `json:"exit_code"`
	Output     string `json:"output"`
	DurationMS int64  `json:"duration_ms"`
	Truncated  bool   `json:"truncated,omitempty"`
}

// ErrUnreachable: the keyholder's socket did not answer.
var ErrUnreachable = errors.New("keyholder unreachable")

// KeyholderError is a refusal or failure the keyholder answered with.
type KeyholderError struct {
	// Status is the keyholder's HTTP status (400, 409, 502, 504, …).
	Status int
	// Message is its {"error":…} text.
	Message string
}

func (e *KeyholderError) Error() string {
	return fmt.Sprintf("keyholder: %s (%d)", e.Message, e.Status)
}

func (e *KeyholderError) outcome() string {
	switch e.Status {
	case http.StatusConflict:
		return outcomeBusy
	case http.StatusGatewayTimeout:
		return outcomeTimeout
	case http.StatusBadGateway:
		return outcomeSSH
	}
	return outcomeError
}

// call runs verb on the keyholder.
func (s *Service) call(ctx context.Context, verb, actor string) (Result, error) {
	res, err := s.kh.Run(ctx, verb, actor)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// verbs lists the keyholder's verbs.
func (s *Service) verbList(ctx context.Context) (VerbList, error) {
	return s.kh.Verbs(ctx)
}

func (e *KeyholderError) code() Code {
	switch e.Status {
	case http.StatusBadRequest:
		return CodeInvalidVerb
	case http.StatusConflict:
		return CodeBusy
	case http.StatusGatewayTimeout:
		return CodeTimeout
	case http.StatusBadGateway:
		return CodeSSH
	}
	return CodeError
}
