package claude

import (
	"bytes"
	"encoding/json"
)

// This scanner stays because a benchmark needs it: BenchmarkTranslate with
// encoding/json alone gave 22.5 MB/s against 63 MB/s with it, measured one
// after the other on the same machine, below the 50 MB/s target of
// docs/performance.md.

// rawFields are the raw top-level values of one stream-json line that the
// translator may need. Big subtrees it never reads (usage, modelUsage,
// slash_commands, …) are skipped without being decoded: that is most of
// the bytes of the init and result lines.
type rawFields struct {
	typ, subtype, event, message                  []byte
	sessionID, model, tools, status               []byte
	attempt, maxRetries, retryDelay, errorStatus  []byte
	errorV, isError, result, durationMS, numTurns []byte
	cost, errors                                  []byte
	requestID, request                            []byte
}

// decodeLine fills l from the fields scanObject found. It decodes (and so
// fully checks) only the fields l's type uses; false when one has the
// wrong shape.
func decodeLine(f *rawFields, l *line) bool {
	ok := str(f.typ, &l.Type)
	switch l.Type {
	case "system":
		ok = ok && str(f.subtype, &l.Subtype) && str(f.status, &l.Status) &&
			str(f.sessionID, &l.SessionID) && str(f.model, &l.Model) &&
			val(f.tools, &l.Tools) && val(f.attempt, &l.Attempt) && val(f.maxRetries, &l.MaxRetries) &&
			val(f.retryDelay, &l.RetryDelayMS)
		l.ErrorStatus, l.Error = f.errorStatus, f.errorV
	case "stream_event":
		if f.event != nil {
			l.Event = new(streamEvent)
			ok = ok && val(f.event, l.Event)
		}
	case "assistant", "user":
		if f.message != nil {
			l.Message = new(message)
			ok = ok && val(f.message, l.Message)
		}
	case "control_request", "control_cancel_request":
		ok = ok && str(f.requestID, &l.RequestID)
		if f.request != nil {
			l.Request = new(controlRequest)
			ok = ok && val(f.request, l.Request)
		}
	case "result":
		ok = ok && str(f.subtype, &l.Subtype) && val(f.isError, &l.IsError) && str(f.result, &l.Result) &&
			val(f.durationMS, &l.DurationMS) && val(f.numTurns, &l.NumTurns) &&
			val(f.cost, &l.TotalCostUSD) && val(f.errors, &l.Errors)
	}
	return ok
}

// val decodes raw into v; an absent field (nil) or null leaves v as is.
func val(raw []byte, v any) bool {
	if raw == nil {
		return true
	}
	return json.Unmarshal(raw, v) == nil
}

// str decodes a JSON string, taking the fast way when it has no escapes.
func str(raw []byte, s *string) bool {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		*s = string(raw[1 : len(raw)-1])
		return true
	}
	if string(raw) == "null" {
		return true
	}
	return val(raw, s)
}

// scanObject walks the top level of a JSON object and stores the raw value
// of each key rawFields knows (the last one wins, as in encoding/json).
// Keys are compared as written: an escaped key matches nothing. It checks
// the object's structure (balanced, strings closed, nothing after it) but
// not the inside of values it skips: those are never used, and the values
// used are checked by encoding/json when decoded. False: not an object.
func scanObject(b []byte, f *rawFields) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	first := true
	for {
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return skipWS(b, i+1) == len(b)
		}
		if b[i] == ',' {
			if !first {
				i = skipWS(b, i+1)
			} else {
				return false
			}
		} else if !first {
			return false
		}
		first = false
		if i >= len(b) || b[i] != '"' {
			return false
		}
		kEnd := skipString(b, i)
		if kEnd < 0 {
			return false
		}
		key := b[i+1 : kEnd-1]
		i = skipWS(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		vEnd := skipValue(b, i)
		if vEnd < 0 {
			return false
		}
		f.set(key, b[i:vEnd])
		i = vEnd
	}
}

func (f *rawFields) set(key, v []byte) {
	switch string(key) {
	case "type":
		f.typ = v
	case "subtype":
		f.subtype = v
	case "event":
		f.event = v
	case "message":
		f.message = v
	case "session_id":
		f.sessionID = v
	case "model":
		f.model = v
	case "tools":
		f.tools = v
	case "status":
		f.status = v
	case "attempt":
		f.attempt = v
	case "max_retries":
		f.maxRetries = v
	case "retry_delay_ms":
		f.retryDelay = v
	case "error_status":
		f.errorStatus = v
	case "error":
		f.errorV = v
	case "is_error":
		f.isError = v
	case "result":
		f.result = v
	case "duration_ms":
		f.durationMS = v
	case "num_turns":
		f.numTurns = v
	case "total_cost_usd":
		f.cost = v
	case "errors":
		f.errors = v
	case "request_id":
		f.requestID = v
	case "request":
		f.request = v
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"'),
// or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the value starting at b[i], or -1.
// b is valid JSON, so nesting is balanced and only strings need care.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := skipString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	default:
		j := i
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '-' || b[j] == '+' || b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

func literal(b []byte, i int, word string) int {
	if bytes.HasPrefix(b[i:], []byte(word)) {
		return i + len(word)
	}
	return -1
}
