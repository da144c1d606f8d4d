// Stand-in for CUDA's header when the kernels are compiled by emu/ (C++).
#pragma once
#include "../emu.h"
