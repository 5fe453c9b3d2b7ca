// The Python module snntorch_nengo._C (setup.py build only). Importing it
// loads this library, whose static initialisers register the
// snntorch_nengo_cpp ops with torch (TORCH_LIBRARY in ops.cpp), and gives
// Python the in-place stepping `Program` (program.h). The CMake build makes a
// plain shared library of the same code instead (load it with
// torch.ops.load_library; no Python bindings).
#include <torch/extension.h>

#include "program.h"

namespace py = pybind11;
using snntorch_nengo::Program;

#ifdef SNN_SOURCE_HASH
// The hash of the sources this module was built from (the Python builds
// define it: snntorch_nengo/kernels/extension.py). The package reads it from
// the file, without loading the module, to tell a module built from older
// sources than its own, which it then builds anew rather than load.
extern "C" __attribute__((used, visibility("default")))
const char snntorch_nengo_source_hash[] = "snntorch_nengo sources sha256 " SNN_SOURCE_HASH;
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused spiking-neuron + lowpass CPU kernels (torch.ops.snntorch_nengo_cpp) "
            "and the in-place stepping Program.";
#ifdef SNN_SOURCE_HASH
  m.attr("SOURCE_HASH") = SNN_SOURCE_HASH;
#endif
  py::class_<Program>(m, "Program")
      .def(py::init<>())
      .def("add", &Program::add, py::arg("opcode"), py::arg("tensors"), py::arg("ints"),
           py::arg("floats"))
      .def(
          "add_call",
          [](Program& self, py::function fn) {
            // called from `run`, which Python entered holding the GIL
            self.add_call([fn](int64_t k) { fn(k); });
          },
          py::arg("fn"))
      .def("set", &Program::set, py::arg("index"), py::arg("tensors"), py::arg("ints"))
      .def("run", &Program::run, py::arg("k0"), py::arg("k1"))
      .def("__len__", &Program::size);
}
