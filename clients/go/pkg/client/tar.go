package client

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// TarFromMap builds an archive of name -> content (mode 0644), in name order.
func TarFromMap(files map[string]string) ([]byte, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		content := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
			return nil, fmt.Errorf("writing header for %s: %w", name, err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing tar: %w", err)
	}
	return buf.Bytes(), nil
}

// TarFromFiles builds an archive of local files stored under their base names (file modes kept).
func TarFromFiles(files []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, file := range files {
		if err := addFile(tw, file, filepath.Base(file)); err != nil {
			return nil, fmt.Errorf("adding %s to tar: %w", file, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing tar: %w", err)
	}
	return buf.Bytes(), nil
}

// TarFromDirectory builds an archive of a directory: relative paths, directory entries, hidden files included.
func TarFromDirectory(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		return addFile(tw, p, filepath.ToSlash(rel))
	})
	if err != nil {
		return nil, fmt.Errorf("walking directory: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing tar: %w", err)
	}
	return buf.Bytes(), nil
}

// TarFromReader builds an archive holding one file named filename with everything r yields.
func TarFromReader(r io.Reader, filename string) ([]byte, error) {
	content, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading input: %w", err)
	}
	return TarFromMap(map[string]string{filename: string(content)})
}

func addFile(tw *tar.Writer, file, name string) error {
	info, err := os.Lstat(file)
	if err != nil {
		return err
	}
	switch {
	case info.IsDir():
		return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: int64(info.Mode().Perm()), Typeflag: tar.TypeDir})
	case info.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(file)
		if err != nil {
			return err
		}
		return tw.WriteHeader(&tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: tar.TypeSymlink})
	case !info.Mode().IsRegular():
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// DetectEntrypoint picks the file to run: the first main.py (by base name), else the first __main__.py, else the
// first .py; an error when there is none.
func DetectEntrypoint(tarData []byte) (string, error) {
	tr := tar.NewReader(bytes.NewReader(tarData))
	var dunderMain, firstPy string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".py") {
			continue
		}
		switch path.Base(h.Name) {
		case "main.py":
			return h.Name, nil
		case "__main__.py":
			if dunderMain == "" {
				dunderMain = h.Name
			}
		}
		if firstPy == "" {
			firstPy = h.Name
		}
	}
	if dunderMain != "" {
		return dunderMain, nil
	}
	if firstPy != "" {
		return firstPy, nil
	}
	return "", fmt.Errorf("no Python files found in archive")
}
