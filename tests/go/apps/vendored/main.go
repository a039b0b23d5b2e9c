package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"example.com/greeter"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, greeter.Hello("you"))
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
