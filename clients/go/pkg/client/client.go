// Package client is a Go client of python-executor, API-compatible with the original pkg/client and limited to
// the standard library.
//
//	c := client.New("http://localhost:8080")
//	res, err := c.Eval(ctx, &client.SimpleExecRequest{Code: "6 * 7", EvalLastExpr: true})
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound is returned for unknown (or expired) executions; its text is the original's. The calls on sessions
// and files answer a 404 with an *APIError for which errors.Is(err, ErrNotFound) holds.
var ErrNotFound = errors.New("execution not found")

// ErrSessionBusy matches (errors.Is) the 409 of a session call made while another runs in the same session.
// Additive.
var ErrSessionBusy = errors.New("session is busy with another call")

// ErrTooManyRequests matches (errors.Is) a 429: the server's queue, or its number of sessions, is full. Additive.
var ErrTooManyRequests = errors.New("too many requests")

// APIError is a non-2xx answer: its status and the server's message. Its text is "server returned N: message",
// as the original's errors. errors.Is matches ErrNotFound (404), ErrSessionBusy (409) and ErrTooManyRequests
// (429). Additive.
type APIError struct {
	StatusCode int
	Message    string
	// RetryAfter is the server's Retry-After hint (zero when none was sent).
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server returned %d", e.StatusCode)
	}
	return fmt.Sprintf("server returned %d: %s", e.StatusCode, e.Message)
}

// Is matches the sentinel errors of the status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrSessionBusy:
		return e.StatusCode == http.StatusConflict
	case ErrTooManyRequests:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// Client talks to one python-executor server.
type Client struct {
	baseURL    string
	httpClient *http.Client
	apiKey     string
}

// New creates a client; one trailing slash of baseURL is ignored.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		baseURL:    strings.TrimSuffix(baseURL, "/"),
		httpClient: &http.Client{Timeout: 5 * time.Minute},
		apiKey:     os.Getenv("PYEXEC_API_KEY"),
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("creating request: %w", err)
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sending request: %w", err)
	}
	return resp, nil
}

// serverError is the server's {"error": ...} text, or the body.
func serverError(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}

func unexpected(resp *http.Response) error {
	e := &APIError{StatusCode: resp.StatusCode, Message: serverError(resp)}
	if seconds, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && seconds > 0 {
		e.RetryAfter = time.Duration(seconds) * time.Second
	}
	return e
}

func decode(resp *http.Response, into interface{}) error {
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}

// call sends req and decodes the answer into `into` when its status is `want`. A 404 is ErrNotFound when
// notFound is set; any other status is the server's error.
func (c *Client) call(req *http.Request, want int, notFound bool, into interface{}) error {
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if notFound && resp.StatusCode == http.StatusNotFound {
		return ErrNotFound
	}
	if resp.StatusCode != want {
		return unexpected(resp)
	}
	return decode(resp, into)
}

// jsonRequest is a request whose body is `body` as JSON.
func (c *Client) jsonRequest(ctx context.Context, method, path string, body interface{}) (*http.Request, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	req, err := c.newRequest(ctx, method, path, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// download sends req and copies a 200 answer's body into w; any other status is the server's error.
func (c *Client) download(req *http.Request, w io.Writer) (int64, error) {
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, unexpected(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("downloading: %w", err)
	}
	return n, nil
}

func (c *Client) multipartRequest(ctx context.Context, path string, tarData []byte, metadata *Metadata) (*http.Request, error) {
	if metadata == nil {
		metadata = &Metadata{}
	}
	if metadata.Entrypoint == "" {
		entry, err := DetectEntrypoint(tarData)
		if err != nil {
			return nil, err
		}
		metadata.Entrypoint = entry
	}
	meta, err := json.Marshal(metadata)
	if err != nil {
		return nil, fmt.Errorf("encoding metadata: %w", err)
	}
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	part, err := w.CreateFormFile("tar", "code.tar")
	if err != nil {
		return nil, err
	}
	if _, err := part.Write(tarData); err != nil {
		return nil, err
	}
	if err := w.WriteField("metadata", string(meta)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	req, err := c.newRequest(ctx, http.MethodPost, path, &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	return req, nil
}

// ExecuteSync uploads a tar archive, runs it and waits for the result. Metadata.Entrypoint is detected when empty.
func (c *Client) ExecuteSync(ctx context.Context, tarData []byte, metadata *Metadata) (*ExecutionResult, error) {
	req, err := c.multipartRequest(ctx, "/api/v1/exec/sync", tarData, metadata)
	if err != nil {
		return nil, err
	}
	var result ExecutionResult
	if err := c.call(req, http.StatusOK, false, &result); err != nil {
		return nil, err
	}
	return &result, nil
}

// ExecuteAsync uploads a tar archive and returns the new execution's id at once.
func (c *Client) ExecuteAsync(ctx context.Context, tarData []byte, metadata *Metadata) (string, error) {
	req, err := c.multipartRequest(ctx, "/api/v1/exec/async", tarData, metadata)
	if err != nil {
		return "", err
	}
	var answer AsyncResponse
	if err := c.call(req, http.StatusAccepted, false, &answer); err != nil {
		return "", err
	}
	return answer.ExecutionID, nil
}

// GetExecution returns an execution's current state.
func (c *Client) GetExecution(ctx context.Context, executionID string) (*ExecutionResult, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/executions/"+url.PathEscape(executionID), nil)
	if err != nil {
		return nil, err
	}
	var result ExecutionResult
	if err := c.call(req, http.StatusOK, true, &result); err != nil {
		return nil, err
	}
	return &result, nil
}

// KillExecution kills a pending or running execution (a finished one is left as it is).
func (c *Client) KillExecution(ctx context.Context, executionID string) error {
	_, err := c.Kill(ctx, executionID)
	return err
}

// Kill kills an execution and returns its status after the request. Additive.
func (c *Client) Kill(ctx context.Context, executionID string) (ExecutionStatus, error) {
	req, err := c.newRequest(ctx, http.MethodDelete, "/api/v1/executions/"+url.PathEscape(executionID), nil)
	if err != nil {
		return "", err
	}
	var answer KillResponse
	if err := c.call(req, http.StatusOK, true, &answer); err != nil {
		return "", err
	}
	return ExecutionStatus(answer.Status), nil
}

// WaitForCompletion polls every pollInterval until the execution is completed, failed or killed.
func (c *Client) WaitForCompletion(ctx context.Context, executionID string, pollInterval time.Duration) (*ExecutionResult, error) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		result, err := c.GetExecution(ctx, executionID)
		if err != nil {
			return nil, err
		}
		if result.Status.IsTerminal() {
			return result, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ticker.C:
		}
	}
}

// Eval runs code through /api/v1/eval and waits for the result.
func (c *Client) Eval(ctx context.Context, request *SimpleExecRequest) (*ExecutionResult, error) {
	req, err := c.jsonRequest(ctx, http.MethodPost, "/api/v1/eval", request)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		var result ExecutionResult
		return &result, decode(resp, &result)
	case http.StatusBadRequest:
		return nil, fmt.Errorf("bad request: %s", serverError(resp))
	case http.StatusRequestEntityTooLarge:
		return nil, fmt.Errorf("code exceeds maximum size limit")
	default:
		return nil, unexpected(resp)
	}
}

// ListExecutions returns one page of executions, newest first; status "" means all. Additive.
func (c *Client) ListExecutions(ctx context.Context, status ExecutionStatus, limit int, cursor string) (*ExecutionPage, error) {
	query := url.Values{}
	if status != "" {
		query.Set("status", string(status))
	}
	if limit > 0 {
		query.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		query.Set("cursor", cursor)
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/executions?"+query.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var page ExecutionPage
	if err := c.call(req, http.StatusOK, false, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// Health returns the server's /health document. Additive.
func (c *Client) Health(ctx context.Context) (map[string]interface{}, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return nil, err
	}
	var health map[string]interface{}
	if err := c.call(req, http.StatusOK, false, &health); err != nil {
		return nil, err
	}
	return health, nil
}
