module example.com/vendored

go 1.27

require example.com/greeter v1.2.0
