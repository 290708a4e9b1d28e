// SPDX-License-Identifier: Apache-2.0
#include <lz4.h>
#include <lz4hc.h>
