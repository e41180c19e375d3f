package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ipckit/ipckit/shm"
)

// object is one ipckit object as ipcs lists it: a row of ls, a line of
// ls -json.
type object struct {
	Name         string    `json:",omitempty"` // a named segment's name
	Pid          int       `json:",omitempty"` // an anonymous segment: a process holding it,
	FD           int       `json:",omitempty"` // and its descriptor there
	Path         string    // the file ipcs opened
	Kind         string    `json:",omitempty"` // what the header says it holds
	Size         int64     // the file's bytes, header included
	Mode         string    // type and permissions, as ls -l shows them
	Owner        string    // the file's owner: a user name, or a uid
	CreatorPid   uint32    `json:",omitempty"`
	CreatorStart uint64    `json:",omitempty"` // clock ticks since boot, as in /proc/PID/stat
	Creator      string    `json:",omitempty"` // "alive" or "dead"
	Pids         []int     // processes that hold or map it now
	Unreadable   []int     `json:",omitempty"` // processes ipcs may not read that could hold it
	Created      time.Time // when the file was made (birth time, else last status change)
	AgeSeconds   float64
	Error        string `json:",omitempty"` // why it could not be read
	Sentinel     string `json:",omitempty"` // the sentinel error that names the reason

	info shm.Info
	err  error
}

// label is how ipcs names o: its name, or PID:FD.
func (o *object) label() string {
	if o.Name != "" || o.Pid == 0 {
		return o.Name
	}
	return fmt.Sprintf("%d:%d", o.Pid, o.FD)
}

// newObject makes the object for what Inspect or InspectFD returned.
func newObject(info shm.Info, err error, scan *procScan, now time.Time) *object {
	if scan != nil {
		info.Report = scan.withPids(info.Report)
	}
	o := &object{Name: info.Name, Path: info.Path, info: info, err: err}
	if info.Mode == 0 && info.Ino == 0 {
		// The file could not be opened (a link, or gone): say what lstat
		// says of the name, without following it.
		if fi, lerr := os.Lstat(info.Path); lerr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				info.Mode, info.UID, info.Size = fi.Mode(), st.Uid, fi.Size()
				info.Created = fi.ModTime() // a link's own: when it was made
			}
		}
	}
	o.Size, o.Mode, o.Owner, o.Created = info.Size, info.Mode.String(), owner(info.UID), info.Created
	if !info.Created.IsZero() {
		o.AgeSeconds = now.Sub(info.Created).Round(time.Second).Seconds()
	}
	if info.Kind != shm.KindAny {
		o.Kind = info.Kind.String()
		o.CreatorPid, o.CreatorStart = info.CreatorPid, info.CreatorStart
		o.Creator = "dead"
		if info.CreatorAlive {
			o.Creator = "alive"
		}
	}
	if scan != nil {
		o.Pids = scan.usersOf(info)
		o.Unreadable = scan.hidden(info)
	}
	if o.Pids == nil {
		o.Pids = []int{}
	}
	if err != nil {
		o.Error, o.Sentinel = err.Error(), sentinelOf(err)
	}
	return o
}

// sentinels are the errors ipcs names, most specific first.
var sentinels = []struct {
	name string
	err  error
}{
	{"shm.ErrSymlink", shm.ErrSymlink}, {"shm.ErrNotRegular", shm.ErrNotRegular},
	{"shm.ErrBadMagic", shm.ErrBadMagic}, {"shm.ErrVersion", shm.ErrVersion},
	{"shm.ErrKind", shm.ErrKind}, {"shm.ErrChecksum", shm.ErrChecksum},
	{"shm.ErrSize", shm.ErrSize}, {"shm.ErrNotReady", shm.ErrNotReady},
	{"shm.ErrFault", shm.ErrFault}, {"ErrCorrupt", shm.ErrCorrupt},
	{"os.ErrNotExist", os.ErrNotExist}, {"os.ErrPermission", os.ErrPermission},
	{"os.ErrInvalid", os.ErrInvalid},
}

// sentinelOf names the sentinel err wraps, or "" if none of sentinels.
func sentinelOf(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return ""
}

var owners = map[uint32]string{}

// owner returns the name of user uid, or the uid.
func owner(uid uint32) string {
	if n, ok := owners[uid]; ok {
		return n
	}
	id := strconv.FormatUint(uint64(uid), 10)
	n := id
	if u, err := user.LookupId(id); err == nil {
		n = u.Username
	}
	owners[uid] = n
	return n
}

// matches reports whether label matches one of patterns (all, if none).
func matches(label string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, label); ok {
			return true
		}
	}
	return false
}

// collect returns every object matching patterns: the named segments in
// name order, then the anonymous ones, each once (by the first process and
// descriptor that holds it).
func collect(scan *procScan, patterns []string, named bool) ([]*object, error) {
	names, err := shm.Names()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	now := time.Now()
	var objs []*object
	for _, n := range names {
		if matches(n, patterns) {
			info, err := shm.Inspect(n)
			objs = append(objs, newObject(info, err, scan, now))
		}
	}
	if named {
		return objs, nil
	}
	seen := map[fileKey]bool{}
	for _, a := range scan.anon {
		label := fmt.Sprintf("%d:%d", a.pid, a.fd)
		if seen[a.key] || !matches(label, patterns) {
			continue
		}
		seen[a.key] = true
		info, err := shm.InspectFD(a.pid, a.fd)
		o := newObject(info, err, scan, now)
		o.Pid, o.FD = a.pid, a.fd
		objs = append(objs, o)
	}
	return objs, nil
}

func (c *cli) ls(args []string) error {
	fs := c.flags("ls")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if err := parse(fs, args); err != nil {
		return err
	}
	scan, err := scanProcs()
	if err != nil {
		return err
	}
	objs, err := collect(scan, fs.Args(), false)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, o := range objs {
			if err := enc.Encode(o); err != nil {
				return err
			}
		}
		reportUnreadable(c.stderr, scan)
		return nil
	}
	writeTable(c.stdout, objs)
	reportUnreadable(c.stdout, scan)
	return nil
}

// writeTable prints objs as ls's table.
func writeTable(w io.Writer, objs []*object) {
	var buf bytes.Buffer
	defer func() {
		// An empty ERROR column leaves the padding of the one before it.
		for line := range strings.Lines(buf.String()) {
			fmt.Fprintln(w, strings.TrimRight(line, " \n"))
		}
	}()
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tMODE\tOWNER\tCREATOR\tPIDS\tAGE\tERROR")
	for _, o := range objs {
		kind, creator := "?", "-"
		if o.Kind != "" {
			kind = o.Kind
			creator = fmt.Sprintf("%d %s", o.CreatorPid, o.Creator)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.label(), kind, humanSize(o.Size), o.Mode,
			o.Owner, creator, pidList(o.Pids, o.Unreadable), humanAge(o.AgeSeconds, o.Created), o.errorText())
	}
	tw.Flush()
}

// errorText is o's error for a table: its sentinel's name and the message.
func (o *object) errorText() string {
	if o.Error == "" {
		return ""
	}
	if o.Sentinel != "" {
		return o.Sentinel + ": " + o.Error
	}
	return o.Error
}

func pidList(pids, hidden []int) string {
	var parts []string
	for _, p := range pids {
		parts = append(parts, strconv.Itoa(p))
	}
	s := strings.Join(parts, ",")
	if s == "" {
		s = "-"
	}
	if len(hidden) > 0 {
		s += fmt.Sprintf(" (+%d unreadable)", len(hidden))
	}
	return s
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10)
	}
	f, suffix := float64(n), ""
	for _, s := range []string{"K", "M", "G", "T"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	if f < 10 {
		return fmt.Sprintf("%.1f%s", f, suffix)
	}
	return fmt.Sprintf("%.0f%s", f, suffix)
}

func humanAge(secs float64, changed time.Time) string {
	if changed.IsZero() {
		return "-"
	}
	d := time.Duration(secs) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// reportUnreadable says which processes ipcs could not look into.
func reportUnreadable(w io.Writer, scan *procScan) {
	if len(scan.unreadable) == 0 {
		return
	}
	fmt.Fprintf(w, "not readable, so not shown as users (%d):", len(scan.unreadable))
	for _, u := range scan.unreadable {
		fmt.Fprintf(w, " pid %d (its %s: %s)", u.Pid, u.What, shortErr(u.Error))
	}
	fmt.Fprintln(w)
}

// shortErr is the reason of a path error's message: "permission denied".
func shortErr(msg string) string {
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
