// Package serve answers every request with one line, on $PORT.
package serve

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func Line(text string) {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, text) })
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
