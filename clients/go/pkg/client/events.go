package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// StreamEvents calls handle for each event of an execution's live stream (output as it is produced, then the
// result) until the stream ends or handle returns an error. Additive.
func (c *Client) StreamEvents(ctx context.Context, executionID string, handle func(Event) error) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/executions/"+url.PathEscape(executionID)+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	// A stream lasts as long as the execution: no overall timeout, the context ends it.
	streaming := *c.httpClient
	streaming.Timeout = 0
	resp, err := streaming.Do(req)
	if err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return unexpected(resp)
	}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 64<<10), 16<<20)
	kind, data := "message", []string{}
	dispatch := func() error {
		defer func() { kind, data = "message", data[:0] }()
		if len(data) == 0 {
			return nil
		}
		event, err := decodeEvent(kind, strings.Join(data, "\n"))
		if err != nil || event == nil {
			return err
		}
		return handle(*event)
	}
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case line == "":
			if err := dispatch(); err != nil {
				return err
			}
		case strings.HasPrefix(line, "event:"):
			kind = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(line[len("data:"):], " "))
		}
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("reading events: %w", err)
	}
	return dispatch()
}

func decodeEvent(kind, data string) (*Event, error) {
	switch kind {
	case "output":
		var o struct {
			Stream string `json:"stream"`
			Data   string `json:"data"`
		}
		if err := json.Unmarshal([]byte(data), &o); err != nil {
			return nil, fmt.Errorf("decoding output event: %w", err)
		}
		return &Event{Kind: kind, Stream: o.Stream, Data: o.Data}, nil
	case "status":
		var s struct {
			Status ExecutionStatus `json:"status"`
		}
		if err := json.Unmarshal([]byte(data), &s); err != nil {
			return nil, fmt.Errorf("decoding status event: %w", err)
		}
		return &Event{Kind: kind, Status: s.Status}, nil
	case "result":
		var r ExecutionResult
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return nil, fmt.Errorf("decoding result event: %w", err)
		}
		return &Event{Kind: kind, Result: &r}, nil
	}
	return nil, nil
}

// errStop ends a stream once the result has arrived.
var errStop = errors.New("stop")

// Follow waits for an execution to end, calling onOutput(stream, text) with live output (nil: ignore it). Against
// servers without an event stream it polls. Additive.
func (c *Client) Follow(ctx context.Context, executionID string, onOutput func(stream, data string)) (*ExecutionResult, error) {
	var final *ExecutionResult
	err := c.StreamEvents(ctx, executionID, func(e Event) error {
		switch e.Kind {
		case "output":
			if onOutput != nil {
				onOutput(e.Stream, e.Data)
			}
		case "result":
			final = e.Result
			return errStop
		}
		return nil
	})
	if final != nil {
		return final, nil
	}
	if err != nil && !errors.Is(err, errStop) && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return c.WaitForCompletion(ctx, executionID, time.Second)
}
