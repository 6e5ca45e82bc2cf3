package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"unsafe"
)

// GenesisHash is the prev_hash of the first event: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// hashDomain starts every hashed row, so the chain cannot be confused with
// any other SHA-256 of similar data.
const hashDomain = "airlock-audit-v1\n"

// Row is one event as stored in the chain.
type Row struct {
	Seq      int64
	TS       string // TimeLayout (RFC 3339, UTC, nanoseconds), exactly as stored
	Kind     string
	CallID   string
	Payload  string // canonical JSON, exactly as stored
	PrevHash string
	Hash     string
}

// HashRow returns the hex SHA-256 of a row's canonical encoding:
//
//	"airlock-audit-v1\n" field(seq) field(ts) field(kind) field(call_id) field(payload) field(prev_hash)
//
// where field(x) is the decimal byte length of x, ":", the bytes of x, "\n",
// and seq is written in decimal. docs/audit.md documents it for verifiers
// that do not use airlock.
func HashRow(r *Row) string {
	var h hasher
	h.init()
	return h.sum(r)
}

// hasher hashes rows reusing its buffers.
type hasher struct {
	h   hash.Hash
	buf []byte
	out [sha256.Size]byte
	hex [2 * sha256.Size]byte
}

func (h *hasher) init() {
	h.h = sha256.New()
	h.buf = make([]byte, 0, 256)
}

func (h *hasher) field(s string) { h.fieldBytes(unsafeBytes(s)) }

func (h *hasher) fieldBytes(b []byte) {
	h.buf = strconv.AppendInt(h.buf[:0], int64(len(b)), 10)
	h.buf = append(h.buf, ':')
	h.h.Write(h.buf)
	h.h.Write(b)
	h.h.Write(nl)
}

// unsafeBytes views s as bytes without copying; the hash does not keep them.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

var nl = []byte{'\n'}

// sumBytes computes the hash and returns it as hex bytes valid until the next call.
func (h *hasher) sumBytes(r *Row) []byte {
	h.h.Reset()
	h.h.Write(unsafeBytes(hashDomain))
	var digits [20]byte
	h.fieldBytes(strconv.AppendInt(digits[:0], r.Seq, 10))
	h.field(r.TS)
	h.field(r.Kind)
	h.field(r.CallID)
	h.field(r.Payload)
	h.field(r.PrevHash)
	sum := h.h.Sum(h.out[:0])
	hex.Encode(h.hex[:], sum)
	return h.hex[:]
}

func (h *hasher) sum(r *Row) string { return string(h.sumBytes(r)) }
