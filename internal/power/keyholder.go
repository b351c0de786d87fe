package power

import (
	"context"
	"errors"
	"net/http"

	"breakglass/internal/api/wire"
	"breakglass/internal/ipc"
)

// Keyholder is the keyholder's verb API as the web uses it; *ipc.Client in
// the web. RunRequest answers a non-200 with an *ipc.StatusError and a dead
// socket with an error wrapping ipc.ErrUnreachable.
type Keyholder interface {
	Verbs(ctx context.Context) (ipc.VerbList, error)
	RunRequest(ctx context.Context, verb string, req ipc.RunRequest) (ipc.Result, error)
}

// Result is what a verb that ran returned (its exit code may be non-zero),
// as the keyholder answered it.
type Result = ipc.Result

// VerbList is the keyholder's verb list, relayed by GET /api/vm.
type VerbList = ipc.VerbList

// VerbInfo is one row of VerbList.
type VerbInfo = ipc.VerbInfo

// ErrUnreachable: the keyholder's socket did not answer (ipc.ErrUnreachable).
var ErrUnreachable = ipc.ErrUnreachable

// keyholderOutcome names a keyholder failure for the metrics.
func keyholderOutcome(err error) string {
	switch {
	case errors.Is(err, ipc.ErrUnreachable):
		return outcomeUnreachable
	case errors.Is(err, ipc.ErrBusy):
		return outcomeBusy
	case errors.Is(err, ipc.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return outcomeTimeout
	case errors.Is(err, ipc.ErrSSH):
		return outcomeSSH
	}
	return outcomeError
}

// keyholderCode is the wire code of a keyholder status.
func keyholderCode(status int) wire.Code {
	switch status {
	case http.StatusBadRequest:
		return wire.CodeInvalidVerb
	case http.StatusConflict:
		return wire.CodeBusy
	case http.StatusGatewayTimeout:
		return wire.CodeTimeout
	case http.StatusBadGateway:
		return wire.CodeSSH
	case http.StatusForbidden:
		return wire.CodePresence
	}
	return wire.CodeError
}

// call runs verb on the keyholder, with the request's argv and presence.
func (s *Service) call(ctx context.Context, verb, actor string, req Request) (Result, error) {
	return s.kh.RunRequest(ctx, verb, ipc.RunRequest{Actor: actor, Args: req.Args, Presence: req.Presence})
}

// verbList lists the keyholder's verbs.
func (s *Service) verbList(ctx context.Context) (VerbList, error) {
	return s.kh.Verbs(ctx)
}
