package main

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const src = `package x

func f(a, b int) error {
	if a > b {
		return errA
	}
	if err != nil {
		return err
	}
	v, err := g()
	if err != nil {
		return err
	}
	return nil
}
`

func TestApply(t *testing.T) {
	cases := []struct {
		name     string
		m        Mutant
		wantLine int
		want     string // the mutated line, with its indentation
		wantErr  bool
	}{
		{name: "unique", m: Mutant{From: `if a > b {`, To: `if false {`}, wantLine: 4, want: "\tif false {\n"},
		{name: "after", m: Mutant{After: `v, err := g()`, From: `if err != nil {`, To: `if false {`}, wantLine: 11, want: "\tif false {\n"},
		{name: "ambiguous", m: Mutant{From: `if err != nil {`, To: `if false {`}, wantErr: true},
		{name: "missing", m: Mutant{From: `if a < b {`, To: `if false {`}, wantErr: true},
		{name: "after-missing", m: Mutant{After: `w := h()`, From: `if err != nil {`, To: `if false {`}, wantErr: true},
		{name: "partial-line", m: Mutant{From: `if a > b`, To: `if false`}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.m.File = "x.go"
			got, line, err := apply([]byte(src), c.m)
			if c.wantErr {
				assert.True(t, errors.Is(err, errApply), "err %v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.wantLine, line)
			lines := bytes.SplitAfter(got, []byte("\n"))
			assert.Equal(t, c.want, string(lines[line-1]))
			assert.Equal(t, len(bytes.Split([]byte(src), []byte("\n"))), len(bytes.Split(got, []byte("\n"))), "one line for one line")
		})
	}
}

func TestMutantsAreWellFormed(t *testing.T) {
	for _, m := range mutants {
		assert.NotEqual(t, m.From, m.To, "%s: a mutant changes its line", m.File)
		assert.NotEmpty(t, m.File)
		assert.NotContains(t, m.To, "\n", "%s: one line", m.File)
	}
}
