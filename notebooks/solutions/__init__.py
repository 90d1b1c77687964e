"""Solutions to the lessons' exercises: one module per lesson, one function per exercise."""
