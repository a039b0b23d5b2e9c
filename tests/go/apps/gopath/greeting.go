package main

func greeting() string { return "gopath-style app" }
