package pvegate

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"io"
)

// MaxScreenSide bounds a screen dump's width and height, checked before
// any pixel is read or any image allocated.
const MaxScreenSide = 4096

// ErrPPM is wrapped by every error of DecodePPM.
var ErrPPM = errors.New("bad PPM")

// DecodePPM reads a binary PPM (P6, netpbm's ppm(5)), QEMU's screendump
// format, with a maxval of at most 255. The header's width and height must
// each be 1 to maxSide; they are checked before the image is allocated, so
// a hostile header costs nothing. Data after the last pixel is ignored; too
// little is an error. Samples are scaled to 8 bits when maxval is not 255.
func DecodePPM(r io.Reader, maxSide int) (*image.RGBA, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, 2)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "P6" {
		return nil, fmt.Errorf("%w: not a binary PPM (no P6 magic)", ErrPPM)
	}
	if next, err := br.Peek(1); err != nil || (!isSpace(next[0]) && next[0] != '#') {
		return nil, fmt.Errorf("%w: no whitespace after the P6 magic", ErrPPM)
	}
	var nums [3]int
	for i, what := range []string{"width", "height", "maxval"} {
		n, err := headerNumber(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrPPM, what, err)
		}
		nums[i] = n
	}
	w, h, maxval := nums[0], nums[1], nums[2]
	switch {
	case w < 1 || h < 1:
		return nil, fmt.Errorf("%w: %dx%d is empty", ErrPPM, w, h)
	case w > maxSide || h > maxSide:
		return nil, fmt.Errorf("%w: %dx%d is larger than %dx%d", ErrPPM, w, h, maxSide, maxSide)
	case maxval < 1 || maxval > 255:
		return nil, fmt.Errorf("%w: maxval %d (only 1 to 255 is read)", ErrPPM, maxval)
	}
	// headerNumber consumed the one whitespace byte after maxval.
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	row := make([]byte, 3*w)
	for y := 0; y < h; y++ {
		if _, err := io.ReadFull(br, row); err != nil {
			return nil, fmt.Errorf("%w: pixel data ends at row %d of %d", ErrPPM, y, h)
		}
		pix := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := 0; x < w; x++ {
			r, g, b := row[3*x], row[3*x+1], row[3*x+2]
			if maxval != 255 {
				r, g, b = scale(r, maxval), scale(g, maxval), scale(b, maxval)
			}
			pix[4*x], pix[4*x+1], pix[4*x+2], pix[4*x+3] = r, g, b, 0xff
		}
	}
	return img, nil
}

// scale maps a sample of 0..maxval to 0..255; a sample above maxval is
// clamped.
func scale(v byte, maxval int) byte {
	if int(v) >= maxval {
		return 255
	}
	return byte((int(v)*255 + maxval/2) / maxval)
}

// maxHeaderDigits bounds one header number; more digits is refused rather
// than parsed into an overflow.
const maxHeaderDigits = 9

// maxHeaderSkip bounds the whitespace and comments before one number.
const maxHeaderSkip = 4096

// headerNumber skips whitespace and # comments, reads decimal digits, and
// consumes the single whitespace byte that ends them.
func headerNumber(br *bufio.Reader) (int, error) {
	skipped := 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, errors.New("header ends early")
		}
		if skipped++; skipped > maxHeaderSkip {
			return 0, errors.New("header too long")
		}
		switch {
		case c == '#':
			for c != '\n' && c != '\r' {
				if c, err = br.ReadByte(); err != nil {
					return 0, errors.New("header ends in a comment")
				}
				if skipped++; skipped > maxHeaderSkip {
					return 0, errors.New("header too long")
				}
			}
		case isSpace(c):
		case c >= '0' && c <= '9':
			n, digits := int(c-'0'), 1
			for {
				c, err = br.ReadByte()
				if err != nil {
					return 0, errors.New("header ends early")
				}
				if isSpace(c) {
					return n, nil
				}
				if c < '0' || c > '9' {
					return 0, fmt.Errorf("byte %#x in a number", c)
				}
				if digits++; digits > maxHeaderDigits {
					return 0, errors.New("number too long")
				}
				n = n*10 + int(c-'0')
			}
		default:
			return 0, fmt.Errorf("byte %#x where a number should start", c)
		}
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
