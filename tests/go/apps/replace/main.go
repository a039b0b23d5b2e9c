package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"example.com/lib"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, lib.Answer())
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
