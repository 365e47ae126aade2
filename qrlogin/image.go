package qrlogin

import (
	"strconv"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// Error correction level M (15 %) keeps a frame payload (72 bytes with a
// 3-digit frame number) at symbol version 5, 37×37 modules: on the 288 px
// page that is about 6 px per module, large enough for a phone camera at
// arm's length, and 15 % of the symbol may be lost to glare or a smudged
// screen. Level Q needs version 6 and H version 7 (45×45): each module
// about a fifth smaller at the same size, harder to focus on from afar, for
// damage resistance a lit screen rarely needs (TestQRVersion).
const qrLevel = qrcode.Medium

// QRImage renders payload as a PNG (the frame.png endpoint, and clients that
// want a bitmap). It has 2 pixels per module (about 100 px); displays scale
// it with nearest-neighbour sampling. The elderly flag is accepted for API
// stability: the page, not the image, makes the elderly QR larger.
func QRImage(payload string, _ bool) ([]byte, error) {
	return qrcode.Encode(payload, qrLevel, -2)
}

// QRSVG renders payload as an SVG document: one path of horizontal runs of
// dark modules with a 4-module quiet zone, crisp at any size. It is what the
// page animates (as a data URI): building it costs about a quarter of the
// PNG, which matters when every open login page asks for a frame a second.
func QRSVG(payload string) (string, error) {
	q, err := qrcode.New(payload, qrLevel)
	if err != nil {
		return "", err
	}
	q.DisableBorder = true
	bm := q.Bitmap()
	const quiet = 4
	n := len(bm) + 2*quiet
	var b strings.Builder
	b.Grow(64 * len(bm) * 2)
	ns := strconv.Itoa(n)
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ` + ns + ` ` + ns + `" shape-rendering="crispEdges">`)
	b.WriteString(`<rect width="` + ns + `" height="` + ns + `" fill="#fff"/><path fill="#000" d="`)
	var num [8]byte
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			start := x
			for x < len(row) && row[x] {
				x++
			}
			b.WriteByte('M')
			b.Write(strconv.AppendInt(num[:0], int64(start+quiet), 10))
			b.WriteByte(' ')
			b.Write(strconv.AppendInt(num[:0], int64(y+quiet), 10))
			b.WriteByte('h')
			b.Write(strconv.AppendInt(num[:0], int64(x-start), 10))
			b.WriteString("v1h-")
			b.Write(strconv.AppendInt(num[:0], int64(x-start), 10))
			b.WriteByte('z')
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}
