// SPDX-License-Identifier: Apache-2.0
#include <blkid/blkid.h>
