"""Pure text functions: filtering and segmentation."""
