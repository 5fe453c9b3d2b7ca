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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused spiking-neuron + lowpass CPU kernels (torch.ops.snntorch_nengo_cpp) "
            "and the in-place stepping Program.";
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
      .def("run", &Program::run, py::arg("k0"), py::arg("k1"))
      .def("__len__", &Program::size);
}
