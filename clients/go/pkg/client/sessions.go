package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Sessions (a stateful interpreter between calls) and the files of runs (docs/sessions.md). All additive.
//
// Errors: a non-2xx answer is an *APIError; errors.Is(err, ErrNotFound) for a 404 (unknown or ended session,
// unknown execution or file), ErrSessionBusy for a 409 (another call runs in the session) and ErrTooManyRequests
// for a 429 (the server runs as many sessions as it may).

// EscapeFilePath checks a path relative to /work and URL-encodes it per segment, keeping the / separators. It
// refuses, as the server does, an empty path, a leading /, an empty, "." or ".." component and a NUL byte.
func EscapeFilePath(path string) (string, error) {
	if path == "" || strings.HasPrefix(path, "/") || strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("invalid file path %q: must be relative to /work", path)
	}
	segments := strings.Split(path, "/")
	for i, segment := range segments {
		if segment == "" || segment == "." || segment == ".." {
			return "", fmt.Errorf("invalid file path %q: empty, \".\" and \"..\" components are not allowed", path)
		}
		segments[i] = url.PathEscape(segment)
	}
	return strings.Join(segments, "/"), nil
}

func sessionPath(sessionID string) string {
	return "/api/v1/sessions/" + url.PathEscape(sessionID)
}

func executionPath(executionID string) string {
	return "/api/v1/executions/" + url.PathEscape(executionID)
}

// getJSON sends a body-less request and decodes the answer when its status is `want`.
func (c *Client) getJSON(ctx context.Context, method, path string, want int, into interface{}) error {
	req, err := c.newRequest(ctx, method, path, nil)
	if err != nil {
		return err
	}
	return c.call(req, want, false, into)
}

// CreateSession starts a session (nil: the server's defaults).
func (c *Client) CreateSession(ctx context.Context, request *CreateSessionRequest) (*Session, error) {
	if request == nil {
		request = &CreateSessionRequest{}
	}
	req, err := c.jsonRequest(ctx, http.MethodPost, "/api/v1/sessions", request)
	if err != nil {
		return nil, err
	}
	var session Session
	if err := c.call(req, http.StatusCreated, false, &session); err != nil {
		return nil, err
	}
	return &session, nil
}

// GetSession returns a session's state; errors.Is(err, ErrNotFound) once it ended.
func (c *Client) GetSession(ctx context.Context, sessionID string) (*Session, error) {
	var session Session
	if err := c.getJSON(ctx, http.MethodGet, sessionPath(sessionID), http.StatusOK, &session); err != nil {
		return nil, err
	}
	return &session, nil
}

// ListSessions returns the server's sessions, newest first.
func (c *Client) ListSessions(ctx context.Context) ([]Session, error) {
	var list struct {
		Sessions []Session `json:"sessions"`
	}
	if err := c.getJSON(ctx, http.MethodGet, "/api/v1/sessions", http.StatusOK, &list); err != nil {
		return nil, err
	}
	return list.Sessions, nil
}

// DeleteSession ends a session; its processes are gone when it returns. The answer has State SessionEnded.
func (c *Client) DeleteSession(ctx context.Context, sessionID string) (*Session, error) {
	var session Session
	if err := c.getJSON(ctx, http.MethodDelete, sessionPath(sessionID), http.StatusOK, &session); err != nil {
		return nil, err
	}
	return &session, nil
}

// SessionEval runs code as the session's next cell (what it defines stays for the next call). One call at a time:
// errors.Is(err, ErrSessionBusy) while another runs. At the timeout the code is interrupted and the session keeps
// its state, unless the result says SessionRestarted.
func (c *Client) SessionEval(ctx context.Context, sessionID string, request *SessionEvalRequest) (*ExecutionResult, error) {
	if request == nil {
		request = &SessionEvalRequest{}
	}
	req, err := c.jsonRequest(ctx, http.MethodPost, sessionPath(sessionID)+"/eval", request)
	if err != nil {
		return nil, err
	}
	var result ExecutionResult
	if err := c.call(req, http.StatusOK, false, &result); err != nil {
		return nil, err
	}
	return &result, nil
}

// SessionFiles lists the regular files in the session's /work now.
func (c *Client) SessionFiles(ctx context.Context, sessionID string) (*FileList, error) {
	var list FileList
	if err := c.getJSON(ctx, http.MethodGet, sessionPath(sessionID)+"/files", http.StatusOK, &list); err != nil {
		return nil, err
	}
	return &list, nil
}

// SessionDownload copies a file of the session's /work (path relative to /work) into w, streamed; it returns the
// number of bytes written.
func (c *Client) SessionDownload(ctx context.Context, sessionID, path string, w io.Writer) (int64, error) {
	escaped, err := EscapeFilePath(path)
	if err != nil {
		return 0, err
	}
	req, err := c.newRequest(ctx, http.MethodGet, sessionPath(sessionID)+"/files/"+escaped, nil)
	if err != nil {
		return 0, err
	}
	return c.download(req, w)
}

// SessionUpload writes r, streamed, as a file of the session's /work (parent directories are created). The
// length is sent when it is known (*os.File, *bytes.Reader, *bytes.Buffer, *strings.Reader); r is not closed.
// The client's timeout (WithTimeout) covers the whole upload.
func (c *Client) SessionUpload(ctx context.Context, sessionID, path string, r io.Reader) (*FileInfo, error) {
	escaped, err := EscapeFilePath(path)
	if err != nil {
		return nil, err
	}
	length := int64(-1)
	switch body := r.(type) {
	case interface{ Len() int }:
		length = int64(body.Len())
	case *os.File:
		if info, err := body.Stat(); err == nil && info.Mode().IsRegular() {
			if offset, err := body.Seek(0, io.SeekCurrent); err == nil {
				length = info.Size() - offset
			}
		}
	}
	var body io.Reader = http.NoBody
	if length != 0 {
		body = io.NopCloser(r) // not closed by the transport: r is the caller's
	}
	req, err := c.newRequest(ctx, http.MethodPut, sessionPath(sessionID)+"/files/"+escaped, body)
	if err != nil {
		return nil, err
	}
	if length >= 0 {
		req.ContentLength = length
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	var stored FileInfo
	if err := c.call(req, http.StatusCreated, false, &stored); err != nil {
		return nil, err
	}
	return &stored, nil
}

// ExecutionFiles lists the files an execution created or changed under /work.
func (c *Client) ExecutionFiles(ctx context.Context, executionID string) (*FileList, error) {
	var list FileList
	if err := c.getJSON(ctx, http.MethodGet, executionPath(executionID)+"/files", http.StatusOK, &list); err != nil {
		return nil, err
	}
	return &list, nil
}

// DownloadFile copies one file of an execution (path relative to /work) into w, streamed; it returns the number
// of bytes written.
func (c *Client) DownloadFile(ctx context.Context, executionID, path string, w io.Writer) (int64, error) {
	escaped, err := EscapeFilePath(path)
	if err != nil {
		return 0, err
	}
	req, err := c.newRequest(ctx, http.MethodGet, executionPath(executionID)+"/files/"+escaped, nil)
	if err != nil {
		return 0, err
	}
	return c.download(req, w)
}

// DownloadFilesTar copies all the files of an execution, as one tar archive, into w; it returns the number of
// bytes written.
func (c *Client) DownloadFilesTar(ctx context.Context, executionID string, w io.Writer) (int64, error) {
	req, err := c.newRequest(ctx, http.MethodGet, executionPath(executionID)+"/files?format=tar", nil)
	if err != nil {
		return 0, err
	}
	return c.download(req, w)
}
