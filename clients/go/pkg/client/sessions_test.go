package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const sessionJSON = `{"session_id":"ses_1","state":"idle","python_version":"3.12","created_at":"2026-12-06T22:50:01.120Z",` +
	`"last_used_at":"2026-12-06T22:51:13.004Z","expires_at":"2026-12-06T23:01:13.004Z","calls":3,"restarts":0,` +
	`"memory_mb":1024,"disk_mb":1024,"network_disabled":true,"idle_timeout_seconds":600}`

const evalJSON = `{"execution_id":"exe_1","status":"completed","exit_code":0,"result":"42","session_id":"ses_1"}`

var png = []byte("\x89PNG\r\n\x1a\nfake image")

// recorded is what the fake server received.
type recorded struct {
	Method, RawPath, Query, Auth, ContentType string
	ContentLength                             int64
	Chunked                                   bool
	Body                                      []byte
}

// fakeServer answers from routes ("METHOD /escaped/path" -> status and body) and records the requests.
func fakeServer(t *testing.T, routes map[string]func(w http.ResponseWriter)) (*httptest.Server, func() []recorded) {
	var mu sync.Mutex
	var seen []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"),
			r.Header.Get("Content-Type"), r.ContentLength, len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked", body})
		mu.Unlock()
		if answer, ok := routes[r.Method+" "+r.URL.EscapedPath()]; ok {
			answer(w)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), seen...)
	}
}

func answer(status int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestResultFieldsAndOutputs(t *testing.T) {
	data := `{"execution_id":"exe_1","status":"completed","exit_code":0,"install_ms":1250,"session_id":"ses_1","session_restarted":true,` +
		`"files":[{"path":"out/plot.png","size":18,"sha256":"abcd"}],"files_truncated":true,"outputs":[` +
		`{"type":"image/png","data":"` + base64.StdEncoding.EncodeToString(png) + `"},` +
		`{"type":"image/svg+xml","data":"<svg/>"},{"type":"text/html","data":"<b>x</b>"}]}`
	var r ExecutionResult
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		t.Fatal(err)
	}
	if r.SessionID != "ses_1" || !r.SessionRestarted || !r.FilesTruncated || r.InstallMs != 1250 ||
		!reflect.DeepEqual(r.Files, []FileInfo{{Path: "out/plot.png", Size: 18, SHA256: "abcd"}}) || len(r.Outputs) != 3 {
		t.Fatalf("%+v", r)
	}
	images, err := r.Images()
	if err != nil || len(images) != 1 || !bytes.Equal(images[0], png) {
		t.Fatalf("images %q %v", images, err)
	}
	if svg, _ := r.Outputs[1].Bytes(); string(svg) != "<svg/>" || !r.Outputs[1].IsImage() || !r.Outputs[1].IsText() {
		t.Fatalf("svg %q", svg)
	}
	if _, err := (Output{Type: "image/png", Data: "not base64!"}).Bytes(); err == nil {
		t.Fatal("bad base64 decoded")
	}
	// The original server's answers have none of the new fields, and encode as before.
	var plain ExecutionResult
	json.Unmarshal([]byte(`{"execution_id":"exe_2","status":"failed","exit_code":124}`), &plain)
	if plain.Outputs != nil || plain.Files != nil || plain.SessionID != "" || plain.SessionRestarted || plain.InstallMs != 0 {
		t.Fatalf("%+v", plain)
	}
	if out, _ := json.Marshal(plain); string(out) != `{"execution_id":"exe_2","status":"failed","exit_code":124}` {
		t.Fatalf("%s", out)
	}
	for status, terminal := range map[ExecutionStatus]bool{StatusPending: false, StatusRunning: false, "": false,
		StatusCompleted: true, StatusFailed: true, StatusKilled: true, "timeout": true} {
		if status.IsTerminal() != terminal {
			t.Errorf("%q.IsTerminal() = %v", status, !terminal)
		}
	}
}

func TestSessionRequests(t *testing.T) {
	srv, seen := fakeServer(t, map[string]func(http.ResponseWriter){
		"POST /api/v1/sessions":             answer(http.StatusCreated, sessionJSON),
		"GET /api/v1/sessions":              answer(http.StatusOK, `{"sessions":[`+sessionJSON+`,{"session_id":"ses_0","state":"busy"}]}`),
		"GET /api/v1/sessions/ses_1":        answer(http.StatusOK, sessionJSON),
		"DELETE /api/v1/sessions/ses_1":     answer(http.StatusOK, strings.Replace(sessionJSON, `"idle"`, `"ended"`, 1)),
		"POST /api/v1/sessions/ses_1/eval":  answer(http.StatusOK, evalJSON),
		"GET /api/v1/sessions/ses_1/files":  answer(http.StatusOK, `{"files":[{"path":"a.txt","size":1,"sha256":"00"}],"truncated":true}`),
		"GET /api/v1/sessions/ses%2F..%2Fx": answer(http.StatusOK, sessionJSON),
	})
	ctx := context.Background()
	c := New(srv.URL, WithAPIKey("k"), WithTimeout(5*time.Second))

	s, err := c.CreateSession(ctx, &CreateSessionRequest{PythonVersion: "3.12", RequirementsTxt: "pandas",
		EnvVars: []string{"MODE=test"}, Config: &SessionConfig{MemoryMB: 512, NetworkDisabled: true, IdleTimeoutSeconds: 60}})
	if err != nil || s.SessionID != "ses_1" || s.State != SessionIdle || s.Calls != 3 || s.ExpiresAt == nil ||
		s.ExpiresAt.Minute() != 1 || !s.NetworkDisabled || s.IdleTimeoutSeconds != 600 {
		t.Fatalf("%+v %v", s, err)
	}
	want := `{"python_version":"3.12","requirements_txt":"pandas","env_vars":["MODE=test"],` +
		`"config":{"memory_mb":512,"network_disabled":true,"idle_timeout_seconds":60}}`
	if got := seen()[0]; string(got.Body) != want || got.Auth != "Bearer k" || got.ContentType != "application/json" {
		t.Fatalf("%+v", got)
	}
	if _, err := c.CreateSession(ctx, nil); err != nil || string(seen()[1].Body) != `{}` {
		t.Fatalf("%v %s", err, seen()[1].Body)
	}
	list, err := c.ListSessions(ctx)
	if err != nil || len(list) != 2 || list[1].SessionID != "ses_0" || list[1].State != SessionBusy {
		t.Fatalf("%+v %v", list, err)
	}
	if s, err := c.GetSession(ctx, "ses_1"); err != nil || s.PythonVersion != "3.12" {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := c.GetSession(ctx, "ses/../x"); err != nil {
		t.Fatalf("the id is escaped as one segment: %v", err)
	}

	res, err := c.SessionEval(ctx, "ses_1", &SessionEvalRequest{Code: "6 * 7"})
	if err != nil || res.Result == nil || *res.Result != "42" || res.SessionID != "ses_1" {
		t.Fatalf("%+v %v", res, err)
	}
	if body := string(seen()[len(seen())-1].Body); body != `{"code":"6 * 7"}` {
		t.Fatalf("%s", body)
	}
	c.SessionEval(ctx, "ses_1", &SessionEvalRequest{Code: "x", Files: []CodeFile{{Name: "d.csv", Content: "a,b"}},
		Stdin: "in", EvalLastExpr: Bool(false), TimeoutSeconds: 5})
	want = `{"code":"x","files":[{"name":"d.csv","content":"a,b"}],"stdin":"in","eval_last_expr":false,"config":{"timeout_seconds":5}}`
	if body := string(seen()[len(seen())-1].Body); body != want {
		t.Fatalf("%s", body)
	}
	files, err := c.SessionFiles(ctx, "ses_1")
	if err != nil || !files.Truncated || len(files.Files) != 1 || files.Files[0] != (FileInfo{Path: "a.txt", Size: 1, SHA256: "00"}) {
		t.Fatalf("%+v %v", files, err)
	}
	ended, err := c.DeleteSession(ctx, "ses_1")
	if err != nil || ended.State != SessionEnded {
		t.Fatalf("%+v %v", ended, err)
	}
}

func TestSessionErrors(t *testing.T) {
	srv, _ := fakeServer(t, map[string]func(http.ResponseWriter){
		"POST /api/v1/sessions/ses_1/eval": answer(http.StatusConflict, `{"error":"session ses_1 is busy with another call"}`),
		"POST /api/v1/sessions": func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"too many sessions"}`)
		},
		"GET /api/v1/executions/exe_1/files/big.bin": answer(http.StatusInternalServerError, "boom"),
	})
	ctx := context.Background()
	c := New(srv.URL)
	_, err := c.SessionEval(ctx, "ses_1", &SessionEvalRequest{Code: "1"})
	var apiErr *APIError
	if !errors.Is(err, ErrSessionBusy) || !errors.As(err, &apiErr) || apiErr.StatusCode != 409 ||
		err.Error() != "server returned 409: session ses_1 is busy with another call" {
		t.Fatalf("%v", err)
	}
	_, err = c.CreateSession(ctx, nil)
	if !errors.Is(err, ErrTooManyRequests) || !errors.As(err, &apiErr) || apiErr.RetryAfter != 3*time.Second {
		t.Fatalf("%#v", err)
	}
	if _, err := c.GetSession(ctx, "ses_gone"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrSessionBusy) ||
		err.Error() != "server returned 404: not found" {
		t.Fatalf("%v", err)
	}
	if _, err := c.DownloadFile(ctx, "exe_1", "big.bin", io.Discard); err == nil || err.Error() != "server returned 500: boom" {
		t.Fatalf("%v", err)
	}
	// The original calls keep their errors.
	if _, err := c.GetExecution(ctx, "exe_x"); err != ErrNotFound {
		t.Fatalf("%v", err)
	}
}

func TestFilePathsAreEscapedPerSegmentAndChecked(t *testing.T) {
	if got, _ := EscapeFilePath("out dir/ü#?%.txt"); got != "out%20dir/%C3%BC%23%3F%25.txt" {
		t.Fatalf("%q", got)
	}
	srv, seen := fakeServer(t, map[string]func(http.ResponseWriter){
		"GET /api/v1/sessions/ses_1/files/out%20dir/r%C3%A9sum%C3%A9%231.txt": answer(http.StatusOK, "cv"),
	})
	ctx := context.Background()
	c := New(srv.URL)
	var out bytes.Buffer
	if n, err := c.SessionDownload(ctx, "ses_1", "out dir/résumé#1.txt", &out); err != nil || n != 2 || out.String() != "cv" {
		t.Fatalf("%d %v %q", n, err, out.String())
	}
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a\x00b"} {
		if _, err := c.SessionDownload(ctx, "ses_1", bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, err := c.DownloadFile(ctx, "exe_1", bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, err := c.SessionUpload(ctx, "ses_1", bad, strings.NewReader("x")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if n := len(seen()); n != 1 {
		t.Fatalf("an invalid path sent %d requests", n)
	}
}

func TestUploadsStream(t *testing.T) {
	srv, seen := fakeServer(t, map[string]func(http.ResponseWriter){
		"PUT /api/v1/sessions/ses_1/files/data/in.csv": answer(http.StatusCreated, `{"path":"data/in.csv","size":3,"sha256":"cd"}`),
	})
	ctx := context.Background()
	c := New(srv.URL)
	stored, err := c.SessionUpload(ctx, "ses_1", "data/in.csv", strings.NewReader("a,b"))
	if err != nil || *stored != (FileInfo{Path: "data/in.csv", Size: 3, SHA256: "cd"}) {
		t.Fatalf("%+v %v", stored, err)
	}
	if got := seen()[0]; string(got.Body) != "a,b" || got.ContentLength != 3 || got.ContentType != "application/octet-stream" {
		t.Fatalf("%+v", got)
	}
	// A local file: its length is sent, it is read from its current offset and it is not closed.
	content := bytes.Repeat([]byte("0123456789"), 100_000)
	local := filepath.Join(t.TempDir(), "big.bin")
	os.WriteFile(local, content, 0o600)
	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(10, io.SeekStart)
	if _, err := c.SessionUpload(ctx, "ses_1", "data/in.csv", f); err != nil {
		t.Fatal(err)
	}
	got := seen()[1]
	if got.ContentLength != int64(len(content)-10) || got.Chunked || !bytes.Equal(got.Body, content[10:]) {
		t.Fatalf("length %d chunked %v body %d bytes", got.ContentLength, got.Chunked, len(got.Body))
	}
	if _, err := f.Stat(); err != nil {
		t.Fatalf("the caller's file was closed: %v", err)
	}
	// A reader of unknown length is sent chunked; an empty one with no body.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(pw, "chunk %d\n", i)
		}
		pw.Close()
	}()
	if _, err := c.SessionUpload(ctx, "ses_1", "data/in.csv", pr); err != nil {
		t.Fatal(err)
	}
	if got := seen()[2]; !got.Chunked || string(got.Body) != "chunk 0\nchunk 1\nchunk 2\n" {
		t.Fatalf("%+v", got)
	}
	if _, err := c.SessionUpload(ctx, "ses_1", "data/in.csv", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if got := seen()[3]; got.ContentLength != 0 || len(got.Body) != 0 {
		t.Fatalf("%+v", got)
	}
}

func TestExecutionFilesAndDownloads(t *testing.T) {
	tarData, _ := TarFromMap(map[string]string{"plot.png": string(png)})
	sum := sha256.Sum256(png)
	srv, seen := fakeServer(t, map[string]func(http.ResponseWriter){
		"GET /api/v1/executions/exe_1/files": func(w http.ResponseWriter) {
			io.WriteString(w, `{"files":[{"path":"plot.png","size":18,"sha256":"`+hex.EncodeToString(sum[:])+`"}]}`)
		},
		"GET /api/v1/executions/exe_1/files/plot.png": answer(http.StatusOK, string(png)),
		"GET /api/v1/executions/exe%201/files":        answer(http.StatusOK, string(tarData)),
	})
	ctx := context.Background()
	c := New(srv.URL)
	list, err := c.ExecutionFiles(ctx, "exe_1")
	if err != nil || list.Truncated || len(list.Files) != 1 || list.Files[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("%+v %v", list, err)
	}
	var out bytes.Buffer
	if n, err := c.DownloadFile(ctx, "exe_1", "plot.png", &out); err != nil || n != int64(len(png)) || !bytes.Equal(out.Bytes(), png) {
		t.Fatalf("%d %v", n, err)
	}
	out.Reset()
	if n, err := c.DownloadFilesTar(ctx, "exe 1", &out); err != nil || n != int64(len(tarData)) || !bytes.Equal(out.Bytes(), tarData) {
		t.Fatalf("%d %v", n, err)
	}
	if got := seen()[2]; got.Query != "format=tar" {
		t.Fatalf("%+v", got)
	}
	if _, err := c.DownloadFile(ctx, "exe_1", "missing.txt", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%v", err)
	}
}
