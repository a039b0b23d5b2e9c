module example.com/replace

go 1.27

require example.com/lib v0.0.0

replace example.com/lib => ./lib
