package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTarHelpersAndEntrypoint(t *testing.T) {
	data, err := TarFromMap(map[string]string{"helper.py": "x = 1", "pkg/main.py": "print(1)", "__main__.py": ""})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := DetectEntrypoint(data); got != "pkg/main.py" {
		t.Fatalf("entrypoint %q", got)
	}
	data, _ = TarFromMap(map[string]string{"a.py": "", "__main__.py": ""})
	if got, _ := DetectEntrypoint(data); got != "__main__.py" {
		t.Fatalf("entrypoint %q", got)
	}
	data, _ = TarFromReader(strings.NewReader("print(2)"), "script.py")
	if got, _ := DetectEntrypoint(data); got != "script.py" {
		t.Fatalf("entrypoint %q", got)
	}
	data, _ = TarFromMap(map[string]string{"README.md": ""})
	if _, err := DetectEntrypoint(data); err == nil || err.Error() != "no Python files found in archive" {
		t.Fatalf("error %v", err)
	}
}

func TestConfigSendsNetworkOnlyWhenAsked(t *testing.T) {
	cases := map[string]ExecutionConfig{
		`{"timeout_seconds":5}`:                      {TimeoutSeconds: 5},
		`{"network_disabled":true}`:                  {NetworkDisabled: true},
		`{"network_disabled":false,"memory_mb":256}`: {AllowNetwork: true, MemoryMB: 256},
	}
	for want, config := range cases {
		got, err := json.Marshal(config)
		if err != nil || string(got) != want {
			t.Fatalf("%+v -> %s (%v), want %s", config, got, err, want)
		}
	}
}

func TestRequestsAndErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"missing API key"}`)
			return
		}
		switch r.URL.Path {
		case "/api/v1/exec/sync":
			file, header, err := r.FormFile("tar")
			if err != nil || header.Filename != "code.tar" {
				t.Errorf("tar part: %v", err)
				return
			}
			file.Close()
			var meta Metadata
			if err := json.Unmarshal([]byte(r.FormValue("metadata")), &meta); err != nil || meta.Entrypoint != "main.py" {
				t.Errorf("metadata %+v %v", meta, err)
			}
			io.WriteString(w, `{"execution_id":"exe_1","status":"completed","stdout":"hi\n","exit_code":0,"started_at":"2026-01-17T16:49:31.040938Z"}`)
		case "/api/v1/eval":
			var req SimpleExecRequest
			json.NewDecoder(r.Body).Decode(&req)
			if req.Code == "big" {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"either 'code' or 'files' must be provided"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"execution not found"}`)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := New(srv.URL+"/", WithAPIKey("k"), WithTimeout(5*time.Second))
	tarData, _ := TarFromMap(map[string]string{"main.py": "print('hi')"})
	res, err := c.ExecuteSync(ctx, tarData, &Metadata{})
	if err != nil || res.Stdout != "hi\n" || res.StartedAt == nil {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := c.Eval(ctx, &SimpleExecRequest{}); err == nil || err.Error() != "bad request: either 'code' or 'files' must be provided" {
		t.Fatalf("%v", err)
	}
	if _, err := c.Eval(ctx, &SimpleExecRequest{Code: "big"}); err == nil || err.Error() != "code exceeds maximum size limit" {
		t.Fatalf("%v", err)
	}
	if _, err := c.GetExecution(ctx, "exe_x"); err != ErrNotFound {
		t.Fatalf("%v", err)
	}
	unauthorized := New(srv.URL, WithAPIKey(""))
	if _, err := unauthorized.ExecuteSync(ctx, tarData, nil); err == nil || !strings.HasPrefix(err.Error(), "server returned 401") {
		t.Fatalf("%v", err)
	}
}

func TestEventsAndFollow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "event: output\ndata: {\"stream\":\"stdout\",\"data\":\"tick %d\\n\"}\n\n", i)
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, "event: result\ndata: {\"execution_id\":\"exe_1\",\"status\":\"completed\",\"stdout\":\"done\",\"exit_code\":0}\n\n")
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	var seen strings.Builder
	res, err := New(srv.URL).Follow(context.Background(), "exe_1", func(stream, data string) { seen.WriteString(data) })
	if err != nil || res.Status != StatusCompleted || seen.String() != "tick 0\ntick 1\ntick 2\n" {
		t.Fatalf("%+v %v %q", res, err, seen.String())
	}
}
