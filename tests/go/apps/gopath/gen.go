//go:build ignore

// A generator run by hand (go run gen.go): excluded from the build by its constraint.
package main

func main() {}
