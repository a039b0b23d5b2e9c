module example.com/cmdonly

go 1.27
