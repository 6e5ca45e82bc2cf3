package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
)

// wantCollected is the reference model of a Collector with the given cap.
func wantCollected(data []byte, capacity int64) []byte {
	if capacity < 0 {
		capacity = 0
	}
	if int64(len(data)) <= capacity {
		return data
	}
	h := int(capacity / 2)
	t := int(capacity) - h
	var out []byte
	out = append(out, data[:h]...)
	out = append(out, fmt.Sprintf("\n…[%d bytes truncated]…\n", int64(len(data))-capacity)...)
	out = append(out, data[len(data)-t:]...)
	return out
}

func TestCollector(t *testing.T) {
	tests := []struct {
		name   string
		cap    int64
		writes []string
		want   string
		trunc  bool
	}{
		{name: "empty", cap: 10, want: ""},
		{name: "fits", cap: 10, writes: []string{"hello"}, want: "hello"},
		{name: "exactly-cap", cap: 10, writes: []string{"0123456789"}, want: "0123456789"},
		{name: "exactly-cap-in-pieces", cap: 10, writes: []string{"012", "3456", "789"}, want: "0123456789"},
		{name: "one-over", cap: 10, writes: []string{"0123456789a"}, want: "01234\n…[1 bytes truncated]…\n6789a", trunc: true},
		{name: "big-single-write", cap: 4, writes: []string{"abcdefghij"}, want: "ab\n…[6 bytes truncated]…\nij", trunc: true},
		{name: "ring-wraps", cap: 6, writes: []string{"abc", "de", "fg", "hi", "j"}, want: "abc\n…[4 bytes truncated]…\nhij", trunc: true},
		{name: "odd-cap-tail-larger", cap: 5, writes: []string{"abcdefgh"}, want: "ab\n…[3 bytes truncated]…\nfgh", trunc: true},
		{name: "zero-cap-counts", cap: 0, writes: []string{"abc", "de"}, want: "\n…[5 bytes truncated]…\n", trunc: true},
		{name: "negative-cap", cap: -3, writes: []string{"x"}, want: "\n…[1 bytes truncated]…\n", trunc: true},
		{name: "cap-one", cap: 1, writes: []string{"a", "b", "c"}, want: "\n…[2 bytes truncated]…\nc", trunc: true},
		{name: "empty-writes", cap: 4, writes: []string{"", "ab", "", "cd", ""}, want: "abcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(tt.cap)
			var total int64
			for _, w := range tt.writes {
				n, err := c.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v, want %d, nil", w, n, err, len(w))
				}
				total += int64(len(w))
			}
			if got := string(c.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q, want %q", got, tt.want)
			}
			if got := c.Total(); got != total {
				t.Errorf("Total() = %d, want %d", got, total)
			}
			if got := c.Truncated(); got != tt.trunc {
				t.Errorf("Truncated() = %v, want %v", got, tt.trunc)
			}
		})
	}
}

func TestCollectorBytesIsACopy(t *testing.T) {
	c := NewCollector(8)
	c.Write([]byte("abcd"))
	b := c.Bytes()
	b[0] = 'X'
	if got := string(c.Bytes()); got != "abcd" {
		t.Errorf("Bytes() after caller mutation = %q, want %q", got, "abcd")
	}
}

// TestCollectorMemoryBounded writes far more than the cap, both as one long
// line without a newline and as many small lines, and checks the retained
// buffers never exceed the cap.
func TestCollectorMemoryBounded(t *testing.T) {
	const capacity = 64 << 10
	tests := []struct {
		name  string
		chunk []byte
		count int
	}{
		{name: "long-line-no-newline", chunk: bytes.Repeat([]byte{'x'}, 1<<20), count: 64},
		{name: "yes-lines", chunk: bytes.Repeat([]byte("y\n"), 2048), count: 16 << 10},
		{name: "nul-and-escapes", chunk: bytes.Repeat([]byte("\x00\x1b[2J\x1b]0;t\x07"), 1000), count: 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(capacity)
			for range tt.count {
				c.Write(tt.chunk)
				if held := cap(c.head) + cap(c.ring); held > capacity {
					t.Fatalf("collector holds %d bytes of buffer, want <= %d", held, capacity)
				}
			}
			want := int64(len(tt.chunk)) * int64(tt.count)
			if got := c.Total(); got != want {
				t.Errorf("Total() = %d, want %d", got, want)
			}
			out := c.Bytes()
			if !c.Truncated() {
				t.Errorf("Truncated() = false, want true")
			}
			marker := fmt.Sprintf("\n…[%d bytes truncated]…\n", want-capacity)
			if len(out) != capacity+len(marker) {
				t.Errorf("len(Bytes()) = %d, want %d", len(out), capacity+len(marker))
			}
			if !bytes.Contains(out, []byte(marker)) {
				t.Errorf("Bytes() lacks marker %q", marker)
			}
		})
	}
}

func TestCollectorConcurrent(t *testing.T) {
	c := NewCollector(1 << 10)
	var wg sync.WaitGroup
	const writers, perWriter = 8, 500
	for i := range writers {
		wg.Go(func() {
			line := []byte(fmt.Sprintf("writer %d line\n", i))
			for range perWriter {
				c.Write(line)
			}
		})
	}
	// Readers race the writers.
	wg.Go(func() {
		for range 100 {
			_ = c.Bytes()
			_ = c.Truncated()
		}
	})
	wg.Wait()
	var want int64
	for i := range writers {
		want += int64(len(fmt.Sprintf("writer %d line\n", i))) * perWriter
	}
	if got := c.Total(); got != want {
		t.Errorf("Total() = %d, want %d", got, want)
	}
}

func TestCollectorIsWriter(t *testing.T) {
	var _ io.Writer = NewCollector(1)
	c := NewCollector(16)
	n, err := io.Copy(c, bytes.NewReader(bytes.Repeat([]byte("z"), 100)))
	if n != 100 || err != nil {
		t.Fatalf("io.Copy = %d, %v, want 100, nil", n, err)
	}
	if got, want := string(c.Bytes()), string(wantCollected(bytes.Repeat([]byte("z"), 100), 16)); got != want {
		t.Errorf("Bytes() = %q, want %q", got, want)
	}
}

// FuzzCollector checks the collector against a reference model: any data,
// any cap, any split into writes.
func FuzzCollector(f *testing.F) {
	f.Add([]byte("hello world"), uint16(4), []byte{1, 2, 3})
	f.Add([]byte(""), uint16(0), []byte{})
	f.Add(bytes.Repeat([]byte("ab"), 300), uint16(17), []byte{200, 7, 0, 255})
	f.Add([]byte("\x00\x1b[31mred\x1b[0m\n"), uint16(1), []byte{0})
	f.Fuzz(func(t *testing.T, data []byte, capacity uint16, splits []byte) {
		c := NewCollector(int64(capacity))
		rest := data
		for _, s := range splits {
			if len(rest) == 0 {
				break
			}
			k := min(int(s), len(rest))
			c.Write(rest[:k])
			rest = rest[k:]
		}
		c.Write(rest)
		want := wantCollected(data, int64(capacity))
		if got := c.Bytes(); !bytes.Equal(got, want) {
			t.Fatalf("Bytes() = %q, want %q", got, want)
		}
		if got := c.Total(); got != int64(len(data)) {
			t.Fatalf("Total() = %d, want %d", got, len(data))
		}
		if got, want := c.Truncated(), len(data) > int(capacity); got != want {
			t.Fatalf("Truncated() = %v, want %v", got, want)
		}
		if held := cap(c.head) + cap(c.ring); held > int(capacity) {
			t.Fatalf("collector holds %d bytes of buffer, want <= %d", held, capacity)
		}
	})
}

func BenchmarkCollector(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("write-%d", size), func(b *testing.B) {
			chunk := bytes.Repeat([]byte("y\n"), size/2)
			c := NewCollector(Defaults.OutputCap)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				c.Write(chunk)
			}
		})
	}
}
