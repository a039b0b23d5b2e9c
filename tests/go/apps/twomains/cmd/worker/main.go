package main

import "example.com/twomains/internal/serve"

func main() { serve.Line("this is the worker process") }
