package lib

func Answer() string { return "answer from the replaced local module" }
