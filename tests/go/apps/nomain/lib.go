// Package nomain is a library: there is nothing to run.
package nomain

func Value() int { return 42 }
