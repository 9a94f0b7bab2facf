module github.com/geraldthewes/python-executor

go 1.19
