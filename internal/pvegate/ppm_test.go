package pvegate_test

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/pvegate"
)

func TestDecodePPM(t *testing.T) {
	t.Run("pixels", func(t *testing.T) {
		img, err := pvegate.DecodePPM(strings.NewReader("P6\n# qemu\n2 1\n255\n\x01\x02\x03\xfa\xfb\xfc"), 4096)
		require.NoError(t, err)
		assert.Equal(t, image.Rect(0, 0, 2, 1), img.Bounds())
		assert.Equal(t, []byte{1, 2, 3, 255, 0xfa, 0xfb, 0xfc, 255}, img.Pix)
	})
	t.Run("maxval-scaled", func(t *testing.T) {
		img, err := pvegate.DecodePPM(strings.NewReader("P6 1 1 15 \x0f\x00\x20"), 4096)
		require.NoError(t, err)
		assert.Equal(t, []byte{255, 0, 255, 255}, img.Pix, "15 of 15 is full; above maxval clamps")
	})
	t.Run("trailing-data-ignored", func(t *testing.T) {
		_, err := pvegate.DecodePPM(strings.NewReader("P6 1 1 255\n\x00\x00\x00extra"), 4096)
		assert.NoError(t, err)
	})
}

// badPPMs are inputs DecodePPM must refuse; they seed FuzzDecodePPM.
var badPPMs = []struct{ name, in string }{
	{"empty", ""},
	{"p3", "P3\n1 1\n255\n0 0 0\n"},
	{"p5", "P5\n1 1\n255\n\x00"},
	{"png", "\x89PNG\r\n\x1a\n"},
	{"no-width", "P6\n"},
	{"zero-width", "P6\n0 1\n255\n"},
	{"zero-height", "P6\n1 0\n255\n"},
	{"too-wide", "P6\n4097 1\n255\n"},
	{"too-high", "P6\n1 4097\n255\n"},
	{"huge", "P6\n999999999 999999999\n255\n"},
	{"overflow", "P6\n99999999999999999999 1\n255\n"},
	{"negative", "P6\n-1 1\n255\n"},
	{"maxval-zero", "P6\n1 1\n0\n\x00\x00\x00"},
	{"maxval-16bit", "P6\n1 1\n65535\n\x00\x00\x00\x00\x00\x00"},
	{"short-data", "P6\n2 2\n255\n\x00\x00\x00"},
	{"no-data", "P6\n2 2\n255\n"},
	{"no-separator", "P6\n1 1\n255"},
	{"garbage-in-number", "P6\n1x 1\n255\n"},
	{"comment-forever", "P6\n#" + strings.Repeat("x", 10000)},
	{"whitespace-forever", "P6" + strings.Repeat(" ", 10000) + "1 1 255 \x00\x00\x00"},
}

func TestDecodePPMRefuses(t *testing.T) {
	for _, tc := range badPPMs {
		t.Run(tc.name, func(t *testing.T) {
			img, err := pvegate.DecodePPM(strings.NewReader(tc.in), 4096)
			require.ErrorIs(t, err, pvegate.ErrPPM)
			assert.Nil(t, img)
			assert.LessOrEqual(t, len(err.Error()), 160)
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r *strings.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestDecodePPMChecksSizeBeforeReading(t *testing.T) {
	// A header claiming 4097×4097 followed by 64 MiB of pixels: refused
	// after the header, without reading the pixels or allocating the image.
	in := &countingReader{r: strings.NewReader("P6\n4097 4097\n255\n" + strings.Repeat("\x00", 64<<20))}
	_, err := pvegate.DecodePPM(in, 4096)
	require.ErrorIs(t, err, pvegate.ErrPPM)
	assert.Less(t, in.n, 128<<10, "only the header (and one buffer) was read")
}

func FuzzDecodePPM(f *testing.F) {
	for _, tc := range badPPMs {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("P6\n2 1\n255\n\x01\x02\x03\xfa\xfb\xfc"))
	f.Add([]byte("P6 1 1 15 \x0f\x00\x20"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := pvegate.DecodePPM(bytes.NewReader(b), 64)
		if err != nil {
			if !errors.Is(err, pvegate.ErrPPM) {
				t.Fatalf("error does not wrap ErrPPM: %v", err)
			}
			if img != nil {
				t.Fatal("an image with an error")
			}
			return
		}
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		if w < 1 || h < 1 || w > 64 || h > 64 {
			t.Fatalf("accepted %dx%d beyond the bound", w, h)
		}
		if len(b) < 3*w*h+len(fmt.Sprintf("P6 %d %d 1 ", w, h)) {
			t.Fatalf("accepted %d bytes for %dx%d pixels", len(b), w, h)
		}
		for i := 3; i < len(img.Pix); i += 4 {
			if img.Pix[i] != 0xff {
				t.Fatal("a pixel that is not opaque")
			}
		}
	})
}
