package argdiff_test

import (
	"fmt"

	"github.com/airlock/airlock/broker/argdiff"
)

func ExampleRender() {
	approved := map[string]any{"to": []any{"ann@acme.com"}, "subject": "Q3", "body": "Hi Ann,\nnumbers attached.\nBest"}
	pending := map[string]any{"to": []any{"ann@acme.com", "x@gmail.com"}, "subject": "Q3", "body": "Hi Ann,\nfull export attached.\nBest"}
	fmt.Print(argdiff.Render(argdiff.Diff(approved, pending), 60))
	// Output:
	// 2 changes, 1 sensitive (marked !)
	// ! + to[1]  "x@gmail.com"
	//   ~ body  (1 line(s) added, 1 removed)
	//       Hi Ann,
	//     - numbers attached.
	//     + full export attached.
	//     ~ [-numbers-] {+full export+} attached.
	//       Best
}
