// The Python module snntorch_nengo._C (setup.py build only). Importing it
// loads this library, whose static initialisers register the
// snntorch_nengo_cpp ops with torch (TORCH_LIBRARY in ops.cpp); the module
// itself has no attributes. The CMake build makes a plain shared library of
// the same kernels instead (load it with torch.ops.load_library).
#include <Python.h>

static struct PyModuleDef snntorch_nengo_c_module = {
    PyModuleDef_HEAD_INIT, "_C",
    "Fused spiking-neuron + lowpass CPU kernels (torch.ops.snntorch_nengo_cpp).",
    -1, nullptr,
};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&snntorch_nengo_c_module); }
