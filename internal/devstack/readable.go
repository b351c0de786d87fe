package devstack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// readableWriter turns the children's lines ("[name] " and an hclog JSON
// object, as the containers log) into one short line per event for a
// person: "15:04:05 web       info  message key=value …". A line that is
// not such JSON passes as it is.
type readableWriter struct{ out io.Writer }

// hidden are the fields every line has, shown in the line's own columns.
var hidden = map[string]bool{"@level": true, "@message": true, "@module": true, "@timestamp": true}

func (r readableWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if _, err := io.WriteString(r.out, readable(string(line))); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// readable rewrites one line (with its newline).
func readable(line string) string {
	name, rest := "", strings.TrimSuffix(line, "\n")
	if strings.HasPrefix(rest, "[") {
		if i := strings.Index(rest, "] "); i > 0 {
			name, rest = rest[1:i], rest[i+2:]
		}
	}
	var fields map[string]any
	if !strings.HasPrefix(rest, "{") || json.Unmarshal([]byte(rest), &fields) != nil {
		return line
	}
	msg, _ := fields["@message"].(string)
	level, _ := fields["@level"].(string)
	module, _ := fields["@module"].(string)
	stamp := ""
	if ts, ok := fields["@timestamp"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			stamp = t.Local().Format("15:04:05")
		}
	}
	if module == "" {
		module = name
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if !hidden[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-16s %-5s %s", stamp, module, level, msg)
	for _, k := range keys {
		v := fields[k]
		if s, ok := v.(string); ok && !strings.ContainsAny(s, " \t\"=") && s != "" {
			fmt.Fprintf(&b, " %s=%s", k, s)
			continue
		}
		j, _ := json.Marshal(v)
		fmt.Fprintf(&b, " %s=%s", k, j)
	}
	b.WriteByte('\n')
	return b.String()
}
