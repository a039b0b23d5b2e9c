// Package cmdonly is a library whose command lives in cmd/server.
package cmdonly
