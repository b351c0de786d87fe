package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/event"
)

// errBadLastEventID is a Last-Event-ID that is not a non-negative integer.
var errBadLastEventID = errors.New("invalid Last-Event-ID: a non-negative integer expected")

// cursor returns the id the client saw last: the Last-Event-ID header
// (EventSource's reconnect), else ?last_event_id= (the first connect), else
// 0.
func cursor(r *http.Request) (int64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	if v == "" {
		return 0, nil
	}
	if len(v) > 19 {
		return 0, errBadLastEventID
	}
	// Decimal digits only: ParseInt alone would also take "+1" and "-0".
	if strings.Trim(v, "0123456789") != "" {
		return 0, errBadLastEventID
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errBadLastEventID
	}
	return n, nil
}

// ReconnectDelay is the `retry:` the stream asks EventSource to wait before
// it reconnects.
const ReconnectDelay = time.Second

// stream answers GET /api/sessions/{id}/stream: the log after the client's
// cursor, then every new event as it comes, with a keepalive comment on idle.
// It changes nothing.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	after, err := cursor(r)
	if err != nil {
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
		return
	}
	sub, err := s.sessions.Attach(mux.Vars(r)["id"], after)
	if err != nil {
		writeSessionError(w, err)
		return
	}
	defer sub.Close()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	// The replay may be long: give it a deadline that grows with it.
	_ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout + time.Duration(sub.Backlog())*time.Millisecond))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	// Browsers wait about 3 s before reconnecting unless told otherwise; a
	// phone coming back should resume sooner.
	fmt.Fprintf(bw, "retry: %d\n\n", ReconnectDelay.Milliseconds())
	// The replay is read from the session's file as it is written out.
	for e := range sub.Replay() {
		writeEvent(bw, e)
	}
	if err := sub.ReplayErr(); err != nil {
		// The client reconnects from the last id it got.
		s.log.Error("replay a session's log", "session", mux.Vars(r)["id"], "error", err)
		_ = flush(bw, rc)
		return
	}
	if err := flush(bw, rc); err != nil {
		return
	}

	ticker := time.NewTicker(s.keepAlive)
	defer ticker.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
			_ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			_, _ = bw.WriteString(": keepalive\n\n")
			if err := flush(bw, rc); err != nil {
				return
			}
		case e, ok := <-sub.C:
			if !ok {
				// Dropped for lagging, or shutting down: the client
				// reconnects with Last-Event-ID and resumes.
				return
			}
			_ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			writeEvent(bw, e)
			// Send what else is already queued in the same flush.
			for n := len(sub.C); n > 0; n-- {
				e, ok := <-sub.C
				if !ok {
					break
				}
				writeEvent(bw, e)
			}
			if err := flush(bw, rc); err != nil {
				return
			}
		}
	}
}

// flush pushes bw and the response to the client.
func flush(bw *bufio.Writer, rc *http.ResponseController) error {
	if err := bw.Flush(); err != nil {
		return err
	}
	return rc.Flush()
}

// writeEvent writes e as one SSE event: id, event and data lines.
func writeEvent(bw *bufio.Writer, e event.Event) {
	data := []byte(e.Data)
	if bytes.ContainsAny(data, "\r\n") {
		// Only compact JSON may go on a data line.
		var c bytes.Buffer
		if json.Compact(&c, data) != nil {
			data = []byte(`{}`)
		} else {
			data = c.Bytes()
		}
	}
	var num [20]byte
	_, _ = bw.WriteString("id: ")
	_, _ = bw.Write(strconv.AppendInt(num[:0], e.ID, 10))
	_, _ = bw.WriteString("\nevent: ")
	_, _ = bw.WriteString(string(e.Type))
	_, _ = bw.WriteString("\ndata: ")
	_, _ = bw.Write(data)
	_, _ = bw.WriteString("\n\n")
}
