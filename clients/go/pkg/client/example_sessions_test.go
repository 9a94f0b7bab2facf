//go:build integration

// Live examples of sessions, files out and rich outputs (docs/sessions.md), against PYEXEC_SERVER like
// example_test.go: PYEXEC_SERVER=http://127.0.0.1:8080 go test -tags integration ./...

package client_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/geraldthewes/python-executor/pkg/client"
)

func ctx120() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 120*time.Second)
}

func Example_sessions() {
	c := client.New(server())
	ctx, cancel := ctx120()
	defer cancel()
	s, err := c.CreateSession(ctx, &client.CreateSessionRequest{
		EnvVars: []string{"MODE=test"},
		Config:  &client.SessionConfig{IdleTimeoutSeconds: 120},
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer c.DeleteSession(context.Background(), s.SessionID)
	fmt.Println("state:", s.State, s.IdleTimeoutSeconds)

	if _, err := c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "import os\nx = 21"}); err != nil {
		fmt.Println("error:", err)
		return
	}
	res, err := c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "x * 2, os.environ['MODE']"})
	if err != nil || res.Result == nil {
		fmt.Println("error:", err, res)
		return
	}
	fmt.Println("result:", *res.Result, res.SessionID == s.SessionID)

	stored, err := c.SessionUpload(ctx, s.SessionID, "data/in put.csv", strings.NewReader("a,b\n1,2\n"))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("uploaded:", stored.Path, stored.Size)
	local := filepath.Join(os.TempDir(), fmt.Sprintf("pyexec-upload-%d.bin", time.Now().UnixNano()))
	os.WriteFile(local, bytes.Repeat([]byte{7}, 3<<20), 0o600)
	defer os.Remove(local)
	f, err := os.Open(local)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	stored, err = c.SessionUpload(ctx, s.SessionID, "blob.bin", f) // streamed from the file
	f.Close()
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("uploaded:", stored.Path, stored.Size)

	res, err = c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{
		Code: "rows = open('/work/data/in put.csv').read().splitlines()\nopen('/work/out.txt', 'w').write(str(len(rows)))",
	})
	if err != nil || res.ExitCode != 0 {
		fmt.Println("error:", err, res)
		return
	}
	var out bytes.Buffer
	if _, err := c.SessionDownload(ctx, s.SessionID, "out.txt", &out); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("downloaded:", out.String())
	list, err := c.SessionFiles(ctx, s.SessionID)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	var paths []string
	for _, file := range list.Files {
		paths = append(paths, file.Path)
	}
	sort.Strings(paths)
	fmt.Println("files:", strings.Join(paths, ", "))
	if _, err := c.SessionDownload(ctx, s.SessionID, "missing.txt", io.Discard); errors.Is(err, client.ErrNotFound) {
		fmt.Println("missing file: not found")
	}

	ended, err := c.DeleteSession(ctx, s.SessionID)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	_, err = c.GetSession(ctx, s.SessionID)
	fmt.Println("deleted:", ended.State, errors.Is(err, client.ErrNotFound))
	// Output:
	// state: idle 120
	// result: (42, 'test') true
	// uploaded: data/in put.csv 8
	// uploaded: blob.bin 3145728
	// downloaded: 2
	// files: blob.bin, data/in put.csv, out.txt
	// missing file: not found
	// deleted: ended true
}

func Example_sessionBusyAndTimeout() {
	c := client.New(server())
	ctx, cancel := ctx120()
	defer cancel()
	s, err := c.CreateSession(ctx, nil)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer c.DeleteSession(context.Background(), s.SessionID)
	c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "kept = 'yes'"})
	done := make(chan struct{})
	go func() {
		c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "import time\ntime.sleep(3)"})
		close(done)
	}()
	time.Sleep(time.Second)
	_, err = c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "1"})
	fmt.Println("busy:", errors.Is(err, client.ErrSessionBusy))
	<-done

	res, err := c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "import time\ntime.sleep(30)", TimeoutSeconds: 1})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("timeout:", res.Status.IsTerminal(), res.Status != client.StatusCompleted, res.ErrorType, res.SessionRestarted)
	res, err = c.SessionEval(ctx, s.SessionID, &client.SessionEvalRequest{Code: "kept"})
	if err != nil || res.Result == nil {
		fmt.Println("error:", err, res)
		return
	}
	fmt.Println("kept:", *res.Result)
	// Output:
	// busy: true
	// timeout: true true KeyboardInterrupt false
	// kept: 'yes'
}

func Example_executionFiles() {
	c := client.New(server())
	ctx, cancel := ctx120()
	defer cancel()
	res, err := c.Eval(ctx, &client.SimpleExecRequest{
		Code: "import os\nos.makedirs('/work/out', exist_ok=True)\nopen('/work/out/a b.txt', 'w').write('hello')",
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	for _, f := range res.Files {
		if f.Path == "out/a b.txt" {
			fmt.Println("result names:", f.Path, f.Size)
		}
	}
	list, err := c.ExecutionFiles(ctx, res.ExecutionID)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("listed:", len(list.Files) == len(res.Files), list.Truncated)
	var file bytes.Buffer
	if _, err := c.DownloadFile(ctx, res.ExecutionID, "out/a b.txt", &file); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("content:", file.String())
	var archive bytes.Buffer
	if _, err := c.DownloadFilesTar(ctx, res.ExecutionID, &archive); err != nil {
		fmt.Println("error:", err)
		return
	}
	tr := tar.NewReader(&archive)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if strings.TrimPrefix(h.Name, "./") == "out/a b.txt" {
			fmt.Println("in the tar:", h.Size)
		}
	}
	// Output:
	// result names: out/a b.txt 5
	// listed: true false
	// content: hello
	// in the tar: 5
}

func Example_richOutputs() {
	c := client.New(server())
	ctx, cancel := ctx120()
	defer cancel()
	res, err := c.Eval(ctx, &client.SimpleExecRequest{
		Code:         "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\ndisplay(42)",
		EvalLastExpr: true,
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	images, err := res.Images()
	if err != nil || len(images) != 1 {
		fmt.Println("error:", err, len(images), res.Stderr)
		return
	}
	fmt.Println("png:", bytes.HasPrefix(images[0], []byte("\x89PNG")))
	for _, o := range res.Outputs {
		fmt.Println("output:", o.Type)
	}
	// Output:
	// png: true
	// output: image/png
	// output: text/plain
}
