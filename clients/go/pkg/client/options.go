package client

import (
	"net/http"
	"time"
)

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses the given HTTP client.
func WithHTTPClient(httpClient *http.Client) Option {
	return func(c *Client) { c.httpClient = httpClient }
}

// WithTimeout sets the overall timeout of each request (default 5 minutes).
func WithTimeout(timeout time.Duration) Option {
	return func(c *Client) { c.httpClient.Timeout = timeout }
}

// WithAPIKey sends Authorization: Bearer <key> (default: $PYEXEC_API_KEY). Additive.
func WithAPIKey(key string) Option {
	return func(c *Client) { c.apiKey = key }
}
