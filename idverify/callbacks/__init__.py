# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Vendor callbacks: where a vendor pushes that a user finished its flow (docs/ARCHITECTURE.md)."""
