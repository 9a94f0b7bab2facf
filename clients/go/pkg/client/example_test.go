//go:build integration

// Live examples against a server: PYEXEC_SERVER=http://127.0.0.1:8080 go test -tags integration ./...
// They mirror the original client's runnable examples, and are checked by their Output comments.

package client_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/geraldthewes/python-executor/pkg/client"
)

func server() string {
	if url := os.Getenv("PYEXEC_SERVER"); url != "" {
		return url
	}
	return "http://localhost:8080/"
}

func ctx30() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func Example_executeSync() {
	c := client.New(server())
	tarData, _ := client.TarFromMap(map[string]string{"main.py": `print("Hello, World!")`})
	ctx, cancel := ctx30()
	defer cancel()
	result, err := c.ExecuteSync(ctx, tarData, &client.Metadata{Entrypoint: "main.py"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("Exit code: %d\n", result.ExitCode)
	fmt.Printf("Output: %s\n", strings.TrimSpace(result.Stdout))
	// Output:
	// Exit code: 0
	// Output: Hello, World!
}

func Example_executeWithConfig() {
	c := client.New(server())
	tarData, _ := client.TarFromMap(map[string]string{"main.py": "import sys\nprint(sys.argv[1:])"})
	ctx, cancel := ctx30()
	defer cancel()
	result, err := c.ExecuteSync(ctx, tarData, &client.Metadata{
		Entrypoint: "main.py",
		ScriptArgs: []string{"--verbose", "test.txt"},
		Config:     &client.ExecutionConfig{TimeoutSeconds: 60, NetworkDisabled: true, MemoryMB: 512},
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("Exit code: %d\n", result.ExitCode)
	fmt.Print(result.Stdout)
	// Output:
	// Exit code: 0
	// ['--verbose', 'test.txt']
}

func Example_multiFileExecution() {
	c := client.New(server())
	tarData, _ := client.TarFromMap(map[string]string{
		"main.py":   "from helper import calculate\nprint(f'Result: {calculate(5, 3)}')",
		"helper.py": "def calculate(a, b):\n    return a * b",
	})
	ctx, cancel := ctx30()
	defer cancel()
	result, err := c.ExecuteSync(ctx, tarData, &client.Metadata{Entrypoint: "main.py"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Print(result.Stdout)
	// Output: Result: 15
}

func Example_asyncExecution() {
	c := client.New(server())
	tarData, _ := client.TarFromMap(map[string]string{"main.py": "import time\ntime.sleep(1)\nprint('Async complete!')"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, err := c.ExecuteAsync(ctx, tarData, &client.Metadata{Entrypoint: "main.py"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("execution id received:", strings.HasPrefix(id, "exe_"))
	result, err := c.WaitForCompletion(ctx, id, 500*time.Millisecond)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("Status:", result.Status)
	fmt.Print(result.Stdout)
	// Output:
	// execution id received: true
	// Status: completed
	// Async complete!
}

func Example_eval() {
	c := client.New(server())
	ctx, cancel := ctx30()
	defer cancel()
	for _, code := range []string{"2 + 2", "x = 10\ny = 5\nx * y", "import math\nmath.sqrt(16)"} {
		result, err := c.Eval(ctx, &client.SimpleExecRequest{Code: code, EvalLastExpr: true})
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("exit %d, result %s\n", result.ExitCode, *result.Result)
	}
	result, _ := c.Eval(ctx, &client.SimpleExecRequest{Code: `print("Hello from eval!")`, EvalLastExpr: true})
	fmt.Printf("stdout %q, result present: %t\n", result.Stdout, result.Result != nil)
	// Output:
	// exit 0, result 4
	// exit 0, result 50
	// exit 0, result 4.0
	// stdout "Hello from eval!\n", result present: false
}

func Example_dependencies() {
	c := client.New(server())
	ctx, cancel := ctx30()
	defer cancel()
	// Imports are detected and installed (once; later requests reuse the environment).
	result, err := c.Eval(ctx, &client.SimpleExecRequest{Code: "import six\nsix.PY3", EvalLastExpr: true})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(*result.Result, len(result.InstalledPackages), strings.HasPrefix(result.InstalledPackages[0], "six=="))
	tarData, _ := client.TarFromMap(map[string]string{"main.py": "import six\nprint(six.__version__)"})
	result, err = c.ExecuteSync(ctx, tarData, &client.Metadata{
		Entrypoint:      "main.py",
		RequirementsTxt: "six==1.16.0",
		PreCommands:     []string{"echo preparing"},
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("%q %q %v\n", result.Stdout, result.PreCommandsOutput, result.InstalledPackages)
	// Output:
	// True 1 true
	// "1.16.0\n" "preparing\n" [six==1.16.0]
}

func Example_structuredErrors() {
	c := client.New(server())
	ctx, cancel := ctx30()
	defer cancel()
	result, _ := c.Eval(ctx, &client.SimpleExecRequest{Code: "x = 1\nprint(undefined_name)"})
	fmt.Println(result.ExitCode, result.ErrorType, result.ErrorLine, result.ErrorMessage)
	_, err := c.Eval(ctx, &client.SimpleExecRequest{Code: "1", PythonVersion: "2.7"})
	fmt.Println(err)
	_, err = c.GetExecution(ctx, "exe_00000000-0000-4000-8000-000000000000")
	fmt.Println(err)
	// Output:
	// 1 NameError 2 name 'undefined_name' is not defined
	// bad request: unsupported python_version "2.7"; supported versions: 3.10, 3.11, 3.12, 3.13
	// execution not found
}

func Example_followAndKill() {
	c := client.New(server())
	ctx, cancel := ctx30()
	defer cancel()
	tarData, _ := client.TarFromMap(map[string]string{"main.py": "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.2)"})
	id, _ := c.ExecuteAsync(ctx, tarData, nil)
	var live strings.Builder
	result, err := c.Follow(ctx, id, func(stream, data string) { live.WriteString(data) })
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Print(live.String())
	fmt.Println(result.Status)
	slow, _ := client.TarFromMap(map[string]string{"main.py": "import time\ntime.sleep(60)"})
	id, _ = c.ExecuteAsync(ctx, slow, nil)
	status, _ := c.Kill(ctx, id)
	fmt.Println(status)
	// Output:
	// tick 0
	// tick 1
	// tick 2
	// completed
	// killed
}
