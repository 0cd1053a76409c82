package kmod

import (
	"bufio"
	"bytes"
	"strings"
	"unicode"
)

// listEntry is one line of a module load list.
type listEntry struct {
	path   string
	params string
}

// parseList reads a module load list: one path per line, optionally followed
// by whitespace and module parameters; blank lines and '#' comments are
// skipped.
func parseList(data []byte) ([]listEntry, error) {
	var entries []listEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e := listEntry{path: line}
		if i := strings.IndexFunc(line, unicode.IsSpace); i >= 0 {
			e.path, e.params = line[:i], strings.TrimSpace(line[i:])
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}
