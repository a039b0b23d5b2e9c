// Package greeter stands in for a third-party module fetched by `go mod vendor`.
package greeter

func Hello(who string) string { return "vendored greeter says hello to " + who }
