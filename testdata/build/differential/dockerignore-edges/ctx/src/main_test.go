src/main_test.go
