package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/shm"
)

// Who uses a segment
//
// The kernel tells who uses a file in two places: /proc/PID/fd (the
// descriptors a process holds) and /proc/PID/maps (what it has mapped,
// with the device and inode of each file). ipcs reads both for every
// process, and matches segments by device and inode, which every view of
// one file shares, named or anonymous, linked or since removed. An ipckit
// process keeps the descriptor of every segment it maps for as long as it
// maps it (shm.Segment holds its file), so its descriptors alone show it;
// the maps show other programs that mapped a segment and closed the file.
//
// A process whose directory ipcs may not read (another user's; or one that
// made itself non-dumpable, whose /proc entries belong to root) is not
// guessed about: it is recorded with what could not be read and why, and
// shown as such. gc keeps a segment that such a process could have open
// (see couldOpen).

// fileKey names a file as /proc shows it: device and inode.
type fileKey struct{ dev, ino uint64 }

// anonFD is an anonymous segment's descriptor in a process.
type anonFD struct {
	pid, fd int
	key     fileKey
}

// unreadable is a process ipcs could not look into.
type unreadable struct {
	Pid   int
	UID   int    // its effective uid; -1 if unknown
	What  string // "fds" (then its maps too) or "maps"
	Error string
}

// procScan is what ipcs learned of every process.
type procScan struct {
	users      map[fileKey][]int // pids that hold or map each file, ascending
	anon       []anonFD          // ipckit memfds held, by pid then fd
	unreadable []unreadable      // by pid
	tokens     map[tokenKey]int  // the pid that holds each liveness token
}

// tokenKey names a liveness token by its uid and nonce: the registry file
// and the byte its holder locks (internal/liveness).
type tokenKey struct{ uid, nonce uint32 }

// scanProcs reads /proc/*/fd and /proc/*/maps of every process.
func scanProcs() (*procScan, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	s := &procScan{users: map[fileKey][]int{}, tokens: map[tokenKey]int{}}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		s.scanProc(pid)
	}
	for k, pids := range s.users {
		slices.Sort(pids)
		s.users[k] = slices.Compact(pids)
	}
	return s, nil
}

func (s *procScan) scanProc(pid int) {
	dir := "/proc/" + strconv.Itoa(pid)
	if err := s.scanFDs(pid, dir); err != nil {
		s.cannotRead(pid, dir, "fds", err)
		return
	}
	if err := s.scanMaps(pid, dir); err != nil {
		s.cannotRead(pid, dir, "maps", err)
	}
}

// cannotRead records that what of process pid could not be read, unless
// the process is gone (then there is nothing to read).
func (s *procScan) cannotRead(pid int, dir, what string, err error) {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return
	}
	s.unreadable = append(s.unreadable, unreadable{Pid: pid, UID: euid(dir), What: what, Error: err.Error()})
}

// euid returns the effective uid of the process whose /proc directory is
// dir, from its status, which every user may read (the directory's owner
// is root for a non-dumpable process); -1 if it cannot be read.
func euid(dir string) int {
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				if uid, err := strconv.Atoi(f[1]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}

// scanFDs records the ipckit segments that process pid holds open.
func (s *procScan) scanFDs(pid int, dir string) error {
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return err
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link := dir + "/fd/" + e.Name()
		target, err := os.Readlink(link)
		if err != nil {
			continue // closed meanwhile
		}
		anon := shm.IsAnonymousLink(target)
		if !anon && !inShmDir(target) {
			continue
		}
		if uid, ok := registryUID(target); ok {
			s.scanToken(pid, dir+"/fdinfo/"+e.Name(), uid)
			continue
		}
		fi, err := os.Stat(link) // the open file itself
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		k := fileKey{uint64(st.Dev), st.Ino}
		s.users[k] = append(s.users[k], pid)
		if anon {
			s.anon = append(s.anon, anonFD{pid, fd, k})
		}
	}
	return nil
}

// scanMaps records the ipckit segments that process pid has mapped.
func (s *procScan) scanMaps(pid int, dir string) error {
	f, err := os.Open(dir + "/maps")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := strings.Join(fields[5:], " ")
		if !shm.IsAnonymousLink(path) && !inShmDir(path) {
			continue
		}
		k, ok := mapsKey(fields[3], fields[4])
		if ok {
			s.users[k] = append(s.users[k], pid)
		}
	}
	return sc.Err() // reading the maps of another user's process fails here, not at open
}

// registryUID returns the uid whose liveness registry target is, if it is
// one.
func registryUID(target string) (uint32, bool) {
	uid, err := strconv.ParseUint(strings.TrimPrefix(path.Base(target), registryPrefix), 10, 32)
	if err != nil || !strings.HasPrefix(path.Base(target), registryPrefix) || target != liveness.Path(uint32(uid)) {
		return 0, false
	}
	return uint32(uid), true
}

var registryPrefix = strings.TrimSuffix(path.Base(liveness.Path(0)), "0")

// scanToken records the token that process pid holds: the one byte its
// descriptor of uid's registry has write-locked, which the descriptor's
// fdinfo shows ("lock: 1: OFDLCK ADVISORY WRITE -1 00:1a:1953 3247 3247").
func (s *procScan) scanToken(pid int, fdinfo string, uid uint32) {
	b, err := os.ReadFile(fdinfo)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "lock:" || f[2] != "OFDLCK" || f[4] != "WRITE" || f[7] != f[8] {
			continue
		}
		if nonce, err := strconv.ParseUint(f[7], 10, 32); err == nil {
			s.tokens[tokenKey{uid, uint32(nonce)}] = pid
		}
	}
}

// withPids returns a copy of rep in which every live shm.Holder has the
// pid that holds its token, where the scan found one.
func (s *procScan) withPids(rep shm.Report) shm.Report {
	if rep == nil || len(s.tokens) == 0 {
		return rep
	}
	v := reflect.New(reflect.TypeOf(rep)).Elem()
	v.Set(reflect.ValueOf(rep))
	s.setPids(v)
	return v.Interface().(shm.Report)
}

var holderType = reflect.TypeFor[shm.Holder]()

// setPids sets the Pid of every live shm.Holder in v, which is settable.
func (s *procScan) setPids(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == holderType {
			h := v.Addr().Interface().(*shm.Holder)
			t := liveness.Token(h.Token)
			if h.State == "alive" {
				h.Pid = s.tokens[tokenKey{t.UID(), t.Nonce()}]
			}
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				s.setPids(v.Field(i))
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			c := reflect.New(v.Type().Elem())
			c.Elem().Set(v.Elem())
			s.setPids(c.Elem())
			v.Set(c)
		}
	case reflect.Slice:
		if v.Len() > 0 {
			c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(c, v)
			for i := range c.Len() {
				s.setPids(c.Index(i))
			}
			v.Set(c)
		}
	}
}

// inShmDir reports whether target, a link in /proc/PID/fd or a path in
// /proc/PID/maps, is a file of /dev/shm. It may be one of ipckit's named
// segments whatever its name there: a segment is made unnamed
// (O_TMPFILE) and linked to its name after, and its creator's view of it
// keeps the name of the unnamed file ("/dev/shm/#1234 (deleted)").
func inShmDir(target string) bool { return strings.HasPrefix(target, shmDir+"/") }

// shmDir is the directory of named segments.
var shmDir = path.Dir(shm.Path("x"))

// mapsKey parses the device ("major:minor", hex) and inode of a line of
// /proc/PID/maps into the key a stat of the same file gives.
func mapsKey(dev, ino string) (fileKey, bool) {
	maj, min, ok := strings.Cut(dev, ":")
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(min, 16, 32)
	n, err3 := strconv.ParseUint(ino, 10, 64)
	if !ok || err1 != nil || err2 != nil || err3 != nil {
		return fileKey{}, false
	}
	return fileKey{mkdev(ma, mi), n}, true
}

// mkdev encodes a device number as Linux's stat does (glibc's makedev).
func mkdev(major, minor uint64) uint64 {
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
}

// usersOf returns the pids that hold or map the file info describes.
func (s *procScan) usersOf(info shm.Info) []int {
	if info.Ino == 0 {
		return nil
	}
	return s.users[fileKey{info.Dev, info.Ino}]
}

// hidden returns the processes ipcs could not read that could have the
// file info describes open: those of its owner, or any if its mode lets
// other users open it. A process whose descriptors were read but whose
// maps were not is not among them: an ipckit process holds the
// descriptor of what it maps (see "Who uses a segment"). Nor is root,
// for a file that is not root's: root may open anything, and counting
// its processes, which other users can never read, would keep every
// segment for ever.
func (s *procScan) hidden(info shm.Info) []int {
	var pids []int
	for _, u := range s.unreadable {
		if u.What == "fds" && couldOpen(u.UID, info) {
			pids = append(pids, u.Pid)
		}
	}
	return pids
}

// couldOpen reports whether a process of user uid (-1: unknown) could
// open the file info describes, by its owner and mode.
func couldOpen(uid int, info shm.Info) bool {
	return uid < 0 || uint32(uid) == info.UID || info.Mode.Perm()&0o066 != 0
}
