package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strconv"
)

// AppendExportLine appends one event as an export line (no newline):
//
//	{"seq":1,"ts":"…","kind":"…","call_id":"…","prev_hash":"…","hash":"…","payload":{…}}
//
// The keys come in this order and payload is last and verbatim: the bytes
// between `"payload":` and the final `}` are exactly the stored canonical
// payload the hash covers, so a verifier needs no JSON re-encoding.
func AppendExportLine(b []byte, r *Row) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"ts":`...)
	b = appendJSONString(b, r.TS)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, r.Kind)
	b = append(b, `,"call_id":`...)
	b = appendJSONString(b, r.CallID)
	b = append(b, `,"prev_hash":`...)
	b = appendJSONString(b, r.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendJSONString(b, r.Hash)
	b = append(b, `,"payload":`...)
	if json.Valid([]byte(r.Payload)) {
		b = append(b, r.Payload...)
	} else {
		// Not JSON (the row was tampered with): keep it as a string so the
		// line stays parseable; its hash will not verify.
		b = appendJSONString(b, r.Payload)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	enc, _ := json.Marshal(s)
	return append(b, enc...)
}

// Export writes every event with seq > after as JSON Lines (see
// AppendExportLine), in chain order.
func (r *Reader) Export(ctx context.Context, w io.Writer, after int64) (int64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	var n int64
	var line []byte
	err := r.Each(ctx, after, func(row *Row) error {
		line = AppendExportLine(line[:0], row)
		line = append(line, '\n')
		n++
		_, err := bw.Write(line)
		return err
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, err
}
