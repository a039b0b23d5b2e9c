package main

import (
	"html/template"
	"log"
	"net/http"
	"os"
)

func main() {
	page := template.Must(template.ParseFiles("templates/index.html"))
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		page.Execute(w, map[string]string{"Name": "plain module"})
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
