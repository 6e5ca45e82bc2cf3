//go:build linux

package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"

	"golang.org/x/sys/unix"
)

// Bounds of a dry run's scratch copy of the workspace.
const (
	dryRunMaxBytes = 256 << 20
	dryRunMaxFiles = 20000
)

// dryRun is a reviewer's trial run (Spec.DryRun): the program gets a
// writable scratch copy of the workspace on a size-capped tmpfs owned by the
// run's uid, the original is never touched, and afterwards the host lists
// what the program created, changed or deleted.
type dryRun struct {
	orig string // host workspace ("" for none)
	copy string // staged tmpfs holding the copy
}

// stageDryRun copies s.Workspace (if any) into a fresh staged tmpfs. The
// copy walks by descriptor and never follows symlinks: links are copied as
// links, devices, fifos and sockets are skipped.
func stageDryRun(st *staging, run string, s normSpec, uid uint32) (*dryRun, error) {
	size := max(s.TmpSize, dryRunMaxBytes)
	dst, err := st.tmpfs(run, size, uid, "0755")
	if err != nil {
		return nil, err
	}
	dr := &dryRun{orig: s.Workspace, copy: dst}
	if s.Workspace == "" {
		return dr, nil
	}
	src, err := openDirNoFollow(unix.AT_FDCWD, s.Workspace)
	if err != nil {
		return nil, fmt.Errorf("sandbox: dry run: %w", err)
	}
	defer unix.Close(src)
	dfd, err := openDirNoFollow(unix.AT_FDCWD, dst)
	if err != nil {
		return nil, fmt.Errorf("sandbox: dry run: %w", err)
	}
	defer unix.Close(dfd)
	budget := &copyBudget{bytes: dryRunMaxBytes, files: dryRunMaxFiles}
	if err := copyDir(src, dfd, int(uid), budget, 0); err != nil {
		return nil, fmt.Errorf("sandbox: dry run copy: %w", err)
	}
	return dr, nil
}

type copyBudget struct{ bytes, files int64 }

func openDirNoFollow(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

func readNames(dirfd int) ([]string, error) {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

func copyDir(src, dst, uid int, b *copyBudget, depth int) error {
	if depth > 64 {
		return errors.New("workspace too deep")
	}
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		if b.files--; b.files < 0 {
			return fmt.Errorf("workspace has more than %d entries", dryRunMaxFiles)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		mode := st.Mode & 0o7777 &^ (unix.S_ISUID | unix.S_ISGID)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := unix.Mkdirat(dst, name, 0o700); err != nil {
				return err
			}
			s, err := openDirNoFollow(src, name)
			if err != nil {
				continue
			}
			d, err := openDirNoFollow(dst, name)
			if err != nil {
				unix.Close(s)
				return err
			}
			err = copyDir(s, d, uid, b, depth+1)
			if err == nil {
				err = unix.Fchmod(d, mode)
			}
			if err == nil {
				err = unix.Fchown(d, uid, uid)
			}
			unix.Close(s)
			unix.Close(d)
			if err != nil {
				return err
			}
		case unix.S_IFLNK:
			buf := make([]byte, 4096)
			n, err := unix.Readlinkat(src, name, buf)
			if err != nil {
				continue
			}
			if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
				return err
			}
			if err := unix.Fchownat(dst, name, uid, uid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		case unix.S_IFREG:
			if b.bytes -= st.Size; b.bytes < 0 {
				return fmt.Errorf("workspace is larger than %d bytes", dryRunMaxBytes)
			}
			if err := copyFile(src, dst, name, mode, uid); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(src, dst int, name string, mode uint32, uid int) error {
	in, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // unreadable: left out of the copy
	}
	fin := os.NewFile(uintptr(in), name)
	defer fin.Close()
	out, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	fout := os.NewFile(uintptr(out), name)
	defer fout.Close()
	if _, err := io.Copy(fout, io.LimitReader(fin, dryRunMaxBytes)); err != nil {
		return err
	}
	if err := unix.Fchmod(out, mode); err != nil {
		return err
	}
	return unix.Fchown(out, uid, uid)
}

// changed lists, relative to the workspace, every path the run created,
// changed (content, mode, type, link target) or deleted, sorted.
func (dr *dryRun) changed() []string {
	var out []string
	var a, b = -1, -1
	if dr.orig != "" {
		a, _ = openDirNoFollow(unix.AT_FDCWD, dr.orig)
	}
	b, _ = openDirNoFollow(unix.AT_FDCWD, dr.copy)
	diffDir(a, b, "", &out, 0)
	if a >= 0 {
		unix.Close(a)
	}
	if b >= 0 {
		unix.Close(b)
	}
	slices.Sort(out)
	return out
}

// diffDir compares directory a (original, -1 when absent) with b (the
// copy, -1 when absent).
func diffDir(a, b int, prefix string, out *[]string, depth int) {
	if depth > 64 || len(*out) > dryRunMaxFiles {
		return
	}
	entries := map[string]bool{}
	for _, fd := range []int{a, b} {
		if fd < 0 {
			continue
		}
		names, _ := readNames(fd)
		for _, n := range names {
			entries[n] = true
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		p := path.Join(prefix, name)
		var sa, sb unix.Stat_t
		okA := a >= 0 && unix.Fstatat(a, name, &sa, unix.AT_SYMLINK_NOFOLLOW) == nil
		okB := b >= 0 && unix.Fstatat(b, name, &sb, unix.AT_SYMLINK_NOFOLLOW) == nil
		// Entries the copy skipped (devices, fifos) do not count as deleted.
		if okA && !okB && sa.Mode&unix.S_IFMT != unix.S_IFREG && sa.Mode&unix.S_IFMT != unix.S_IFDIR && sa.Mode&unix.S_IFMT != unix.S_IFLNK {
			continue
		}
		isDir := func(ok bool, st *unix.Stat_t) bool { return ok && st.Mode&unix.S_IFMT == unix.S_IFDIR }
		if isDir(okA, &sa) || isDir(okB, &sb) {
			if okA != okB || !isDir(okA, &sa) || !isDir(okB, &sb) {
				*out = append(*out, p+"/")
			}
			sub := func(fd int, ok bool, st *unix.Stat_t) int {
				if !isDir(ok, st) {
					return -1
				}
				d, err := openDirNoFollow(fd, name)
				if err != nil {
					return -1
				}
				return d
			}
			da, db := sub(a, okA, &sa), sub(b, okB, &sb)
			diffDir(da, db, p, out, depth+1)
			if da >= 0 {
				unix.Close(da)
			}
			if db >= 0 {
				unix.Close(db)
			}
			continue
		}
		if !okA || !okB || sa.Mode&unix.S_IFMT != sb.Mode&unix.S_IFMT ||
			sa.Mode&0o777 != sb.Mode&0o777 || sa.Size != sb.Size || !sameContent(a, b, name, &sa) {
			*out = append(*out, p)
		}
	}
}

func sameContent(a, b int, name string, st *unix.Stat_t) bool {
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		ba, bb := make([]byte, 4096), make([]byte, 4096)
		na, ea := unix.Readlinkat(a, name, ba)
		nb, eb := unix.Readlinkat(b, name, bb)
		return ea == nil && eb == nil && bytes.Equal(ba[:na], bb[:nb])
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return true
	}
	read := func(dir int) ([]byte, bool) {
		fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, false
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, dryRunMaxBytes))
		return data, err == nil
	}
	da, okA := read(a)
	db, okB := read(b)
	return okA && okB && bytes.Equal(da, db)
}
