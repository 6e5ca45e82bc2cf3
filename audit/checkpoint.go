package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/airlock/airlock"
)

// Checkpoint is a chain head recorded outside the database. A later log that
// is shorter than a checkpoint was truncated; one whose hash at Seq differs
// was rewritten.
type Checkpoint struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
	TS   string `json:"ts,omitempty"`
	// Source says where the checkpoint came from (a file and line, "kv"); not stored.
	Source string `json:"-"`
}

// CheckpointPath is the sidecar file that holds a database's checkpoints:
// append-only JSON lines {"seq":…,"hash":"…","ts":"…"}, fsynced.
func CheckpointPath(dbPath string) string { return dbPath + ".checkpoints" }

// ReadCheckpoints reads a checkpoints file; a missing file has none. An
// unreadable last line without its newline (a write cut short by a crash, or
// one being written right now) is ignored; any other bad line is an error.
func ReadCheckpoints(path string) ([]Checkpoint, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	lines := bytes.Split(data, []byte{'\n'})
	var cps []Checkpoint
	for i, b := range lines {
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var cp Checkpoint
		if err := json.Unmarshal(b, &cp); err != nil || cp.Seq < 0 || len(cp.Hash) != 64 {
			if i == len(lines)-1 {
				break // unfinished last line
			}
			return cps, fmt.Errorf("audit: checkpoints %s line %d: not a checkpoint", path, i+1)
		}
		cp.Source = fmt.Sprintf("%s:%d", filepath.Base(path), i+1)
		cps = append(cps, cp)
	}
	return cps, nil
}

// checkpointer records the chain head every cpEvery events or cpInterval,
// off the commit path, to the sidecar file and the optional sink.
type checkpointer struct {
	path string
	cfg  config

	mu      sync.Mutex
	head    airlock.Receipt
	written airlock.Receipt
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	f       *os.File
}

func newCheckpointer(path string, cfg config) *checkpointer {
	return &checkpointer{path: path, cfg: cfg, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (c *checkpointer) start(head airlock.Receipt) {
	c.head, c.written = head, head
	if cps, err := ReadCheckpoints(c.path); err == nil && len(cps) > 0 {
		last := cps[len(cps)-1]
		c.written = airlock.Receipt{Seq: last.Seq, Hash: last.Hash}
	}
	go c.run()
}

// advance is called by the writer after each commit.
func (c *checkpointer) advance(r airlock.Receipt) {
	c.mu.Lock()
	c.head = r
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	var timer *time.Timer
	var timerC <-chan time.Time
	last := time.Now()
	for {
		select {
		case <-c.stop:
			if timer != nil {
				timer.Stop()
			}
			return
		case <-c.kick:
			c.mu.Lock()
			due := c.head.Seq-c.written.Seq >= c.cfg.cpEvery
			c.mu.Unlock()
			if due || time.Since(last) >= c.cfg.cpInterval {
				c.write()
				last = time.Now()
			} else if timerC == nil {
				timer = time.NewTimer(c.cfg.cpInterval - time.Since(last))
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			c.write()
			last = time.Now()
		}
	}
}

// write records the current head if it moved since the last checkpoint.
func (c *checkpointer) write() error {
	c.mu.Lock()
	head := c.head
	moved := head != c.written
	c.mu.Unlock()
	if !moved || head.Seq == 0 {
		return nil
	}
	cp := Checkpoint{Seq: head.Seq, Hash: head.Hash, TS: c.cfg.now().UTC().Format(time.RFC3339Nano)}
	err := c.appendFile(cp)
	if err != nil {
		c.cfg.log.Error("audit: write checkpoint", "path", c.path, "err", err)
	}
	if c.cfg.sink != nil {
		if serr := c.cfg.sink(cp.Seq, cp.Hash); serr != nil {
			c.cfg.log.Error("audit: checkpoint sink", "seq", cp.Seq, "err", serr)
			err = errors.Join(err, serr)
		}
	}
	if err == nil {
		c.mu.Lock()
		c.written = head
		c.mu.Unlock()
	}
	return err
}

func (c *checkpointer) appendFile(cp Checkpoint) error {
	if c.f == nil {
		_, statErr := os.Stat(c.path)
		f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		c.f = f
		if errors.Is(statErr, os.ErrNotExist) {
			syncDir(filepath.Dir(c.path))
		}
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if _, err := c.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return c.f.Sync()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// close stops the loop and writes the final head.
func (c *checkpointer) close(ctx context.Context) error {
	close(c.stop)
	select {
	case <-c.done:
	case <-ctx.Done():
		return fmt.Errorf("audit: close checkpoints: %w", ctx.Err())
	}
	err := c.write()
	if c.f != nil {
		if cerr := c.f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit: final checkpoint: %w", err)
	}
	return nil
}
