package greet

func Message() string { return "main under cmd/server" }
