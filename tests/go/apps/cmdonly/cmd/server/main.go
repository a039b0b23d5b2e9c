package main

import (
	"log"
	"net/http"
	"os"

	"example.com/cmdonly/internal/greet"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(greet.Message() + "\n"))
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
