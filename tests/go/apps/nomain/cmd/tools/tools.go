package tools

func Helper() {}
