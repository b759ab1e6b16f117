/* SPDX-License-Identifier: MIT */
/* pmem/crc32c.h -- CRC32C (Castagnoli), as used for superblock, journal and
 * (issue 4) data block checksums. */
#ifndef PINFS_PMEM_CRC32C_H
#define PINFS_PMEM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues @crc (start with 0) over @len bytes of @buf. */
uint32_t pm_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
