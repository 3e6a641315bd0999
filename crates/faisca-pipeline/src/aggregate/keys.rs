//! Group keys → group numbers.
//!
//! Few distinct keys (TPC-H Q1's two flag columns) take a fast path, [`SmallKeys`]: each key
//! column keeps a tiny dictionary of its distinct values, each encoded in 128 bits (fixed-width
//! values by their bytes, strings of up to 12 bytes by their Arrow view or their bytes, booleans
//! as 0/1), found in a small open-addressing table; the per-column numbers pack into
//! one `u32`, which a direct table (one or two columns) or a map turns into the group number.
//! No row is hashed as a whole and nothing is gathered. When a column exceeds 255 distinct
//! values, a value does not fit (a long string, a float), or there are more than four key
//! columns, the groups so far move to DataFusion's own [`GroupValues`] (the general path, as
//! fast as DataFusion's aggregate because it is DataFusion's) and the batch is redone there.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayData;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, StringArray, StringViewArray,
    make_array,
};
use arrow::buffer::{Buffer, MutableBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::selection::Selection;

/// The most key columns the fast path packs (8 bits each into a `u32`).
const SMALL_MAX_COLUMNS: usize = 4;
/// Distinct values per column on the fast path (numbers 0..=255; one may be null).
const SMALL_MAX_DISTINCT: usize = 256;

/// How a key column's values are encoded on the fast path.
#[derive(Debug, Clone)]
enum Encoding {
    /// Fixed-width values of this many bytes (integers, decimals, dates, timestamps).
    Fixed(usize),
    /// `Utf8View`/`BinaryView`: the view itself, when the value is inline (≤ 12 bytes).
    View,
    /// `Utf8`/`LargeUtf8` of up to 15 bytes: the bytes and the length in the top byte.
    Utf8 { large: bool },
    /// Booleans: 0 or 1.
    Boolean,
}

fn encoding(data_type: &DataType) -> Option<Encoding> {
    Some(match data_type {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => return None,
        DataType::Utf8View => Encoding::View,
        DataType::Utf8 => Encoding::Utf8 { large: false },
        DataType::LargeUtf8 => Encoding::Utf8 { large: true },
        DataType::Boolean => Encoding::Boolean,
        // Values of up to 128 bits (not `Decimal256`, whose 32 bytes go the general way).
        t if t.is_primitive() && t.primitive_width()? <= 16 => {
            Encoding::Fixed(t.primitive_width()?)
        }
        _ => return None,
    })
}

/// Slots in a dictionary's hash table (four per possible value: probes stay short).
const SLOTS: usize = 4 * SMALL_MAX_DISTINCT;
/// An empty slot.
const EMPTY: u16 = u16::MAX;

/// One key column's dictionary: its distinct values and their numbers, in a small
/// open-addressing table (no allocation per lookup, one probe for most values).
#[derive(Debug)]
struct Dictionary {
    encoding: Encoding,
    data_type: DataType,
    /// The values by number (`None` = null).
    values: Vec<Option<u128>>,
    /// The number of the null value, if seen.
    null: Option<u8>,
    slots: Vec<(u128, u16)>,
}

impl Dictionary {
    fn new(encoding: Encoding, data_type: DataType) -> Dictionary {
        Dictionary {
            encoding,
            data_type,
            values: Vec::new(),
            null: None,
            slots: vec![(0, EMPTY); SLOTS],
        }
    }

    /// The number of `value` (`None` = null), added if new; `None` when the dictionary is
    /// full.
    #[inline(always)]
    fn number(&mut self, value: Option<u128>) -> Option<u8> {
        let Some(v) = value else {
            return self.null_number();
        };
        let folded = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        let mut slot = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SLOTS;
        loop {
            let (key, number) = self.slots[slot];
            if number == EMPTY {
                let number = self.add(Some(v))?;
                self.slots[slot] = (v, number as u16);
                return Some(number);
            }
            if key == v {
                return Some(number as u8);
            }
            slot = (slot + 1) % SLOTS;
        }
    }

    #[cold]
    fn null_number(&mut self) -> Option<u8> {
        if self.null.is_none() {
            self.null = Some(self.add(None)?);
        }
        self.null
    }

    #[cold]
    fn add(&mut self, value: Option<u128>) -> Option<u8> {
        if self.values.len() == SMALL_MAX_DISTINCT {
            return None;
        }
        self.values.push(value);
        Some((self.values.len() - 1) as u8)
    }

    /// Adds the numbers of the selected rows of `column` to `packed` at bit `shift`; `false`
    /// when a value does not fit the fast path.
    fn pack(&mut self, column: &ArrayRef, sel: &Selection, packed: &mut [u32], shift: u32) -> bool {
        let nulls = column.nulls().filter(|n| n.null_count() > 0).cloned();
        let nulls = nulls.as_ref();
        match self.encoding {
            Encoding::Fixed(width) => {
                let data = column.to_data();
                let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
                pack_with(self, nulls, sel, packed, shift, |row| {
                    let mut v = [0u8; 16];
                    v[..width].copy_from_slice(&bytes[row * width..(row + 1) * width]);
                    Some(u128::from_le_bytes(v))
                })
            }
            Encoding::View => {
                let views = column.as_string_view().views();
                pack_with(self, nulls, sel, packed, shift, |row| {
                    let view = views[row];
                    ((view as u32) <= 12).then_some(view)
                })
            }
            Encoding::Utf8 { large: false } => {
                let strings = column.as_string::<i32>();
                pack_with(self, nulls, sel, packed, shift, |row| {
                    short_string(strings.value(row).as_bytes())
                })
            }
            Encoding::Utf8 { large: true } => {
                let strings = column.as_string::<i64>();
                pack_with(self, nulls, sel, packed, shift, |row| {
                    short_string(strings.value(row).as_bytes())
                })
            }
            Encoding::Boolean => {
                let bools = column.as_boolean();
                pack_with(self, nulls, sel, packed, shift, |row| {
                    Some(bools.value(row) as u128)
                })
            }
        }
    }

    /// The values numbered `numbers`, as an array.
    fn array(&self, numbers: impl Iterator<Item = u8>) -> DfResult<ArrayRef> {
        let values: Vec<Option<u128>> = numbers.map(|i| self.values[i as usize]).collect();
        let nulls = if values.iter().all(Option::is_some) {
            None
        } else {
            Some(NullBuffer::from_iter(values.iter().map(Option::is_some)))
        };
        let raw = values.iter().map(|v| v.unwrap_or(0));
        Ok(match &self.encoding {
            Encoding::Fixed(width) => {
                // MutableBuffer allocates aligned for any primitive type.
                let mut bytes = MutableBuffer::new(values.len() * width);
                raw.for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()[..*width]));
                let data = ArrayData::builder(self.data_type.clone())
                    .len(values.len())
                    .add_buffer(Buffer::from(bytes))
                    .nulls(nulls)
                    .build()?;
                make_array(data)
            }
            Encoding::View => {
                let views: ScalarBuffer<u128> = raw.collect();
                Arc::new(StringViewArray::try_new(views, vec![], nulls)?)
            }
            Encoding::Utf8 { large } => {
                let strings: Vec<Option<String>> =
                    values.iter().map(|v| v.map(decode_short)).collect();
                if *large {
                    Arc::new(LargeStringArray::from(strings))
                } else {
                    Arc::new(StringArray::from(strings))
                }
            }
            Encoding::Boolean => Arc::new(BooleanArray::new(raw.map(|v| v == 1).collect(), nulls)),
        })
    }
}

fn short_string(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 15 {
        return None;
    }
    let mut v = [0u8; 16];
    v[..bytes.len()].copy_from_slice(bytes);
    v[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(v))
}

fn decode_short(v: u128) -> String {
    let bytes = v.to_le_bytes();
    let len = bytes[15] as usize;
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

/// [`Dictionary::pack`] for one encoding: `read` encodes a non-null row's value (`None`: it
/// does not fit).
#[inline(always)]
fn pack_with(
    dict: &mut Dictionary,
    nulls: Option<&NullBuffer>,
    sel: &Selection,
    packed: &mut [u32],
    shift: u32,
    read: impl Fn(usize) -> Option<u128>,
) -> bool {
    let mut one = |k: usize, row: usize| -> bool {
        let value = match nulls {
            Some(n) if n.is_null(row) => None,
            _ => match read(row) {
                Some(v) => Some(v),
                None => return false,
            },
        };
        match dict.number(value) {
            Some(number) => {
                packed[k] |= (number as u32) << shift;
                true
            }
            None => false,
        }
    };
    match sel {
        Selection::All(n) => (0..*n).all(|row| one(row, row)),
        Selection::Rows(rows) => rows
            .iter()
            .enumerate()
            .all(|(k, row)| one(k, *row as usize)),
    }
}

/// The fast path's state.
#[derive(Debug)]
struct SmallKeys {
    columns: Vec<Dictionary>,
    /// Group number by packed key, for one or two columns (`u32::MAX`: no group yet).
    table: Vec<u32>,
    /// Group number by packed key, for three or four columns.
    map: HashMap<u32, u32>,
    /// Each group's packed key.
    groups: Vec<u32>,
}

impl SmallKeys {
    fn new(schema: &Schema) -> Option<SmallKeys> {
        if schema.fields().len() > SMALL_MAX_COLUMNS {
            return None;
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                Some(Dictionary::new(
                    encoding(f.data_type())?,
                    f.data_type().clone(),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        let table = if columns.len() <= 2 {
            vec![u32::MAX; 1 << (8 * columns.len())]
        } else {
            Vec::new()
        };
        Some(SmallKeys {
            columns,
            table,
            map: HashMap::new(),
            groups: Vec::new(),
        })
    }

    /// The group of each selected row into `out`; `false` (with the groups this batch added
    /// forgotten) when the batch does not fit the fast path.
    fn map_rows(&mut self, keys: &[ArrayRef], sel: &Selection, out: &mut Vec<u32>) -> bool {
        let mut packed = vec![0u32; sel.len()];
        for (c, (dict, column)) in self.columns.iter_mut().zip(keys).enumerate() {
            if !dict.pack(column, sel, &mut packed, 8 * c as u32) {
                return false;
            }
        }
        out.clear();
        out.reserve(packed.len());
        if self.columns.len() <= 2 {
            for key in packed {
                let slot = &mut self.table[key as usize];
                if *slot == u32::MAX {
                    *slot = self.groups.len() as u32;
                    self.groups.push(key);
                }
                out.push(*slot);
            }
        } else {
            for key in packed {
                let slot = self.map.entry(key).or_insert(u32::MAX);
                if *slot == u32::MAX {
                    *slot = self.groups.len() as u32;
                    self.groups.push(key);
                }
                out.push(*slot);
            }
        }
        true
    }

    /// Key columns of the first `groups` groups.
    fn arrays(&self, groups: usize) -> DfResult<Vec<ArrayRef>> {
        self.columns
            .iter()
            .enumerate()
            .map(|(c, dict)| {
                dict.array(
                    self.groups[..groups]
                        .iter()
                        .map(|key| (key >> (8 * c)) as u8),
                )
            })
            .collect()
    }

    fn clear(&mut self) {
        self.table.iter_mut().for_each(|s| *s = u32::MAX);
        self.map.clear();
        self.groups.clear();
    }
}

/// Maps rows to group numbers, assigned from 0 in order of first appearance.
pub struct GroupKeys {
    schema: SchemaRef,
    path: Path,
    groups_out: Vec<usize>,
}

enum Path {
    Small(Box<SmallKeys>),
    General(Box<dyn GroupValues>),
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = match self.path {
            Path::Small(_) => "small",
            Path::General(_) => "general",
        };
        write!(f, "GroupKeys({path}, {} groups)", self.len())
    }
}

/// What [`GroupKeys::map_rows`] did.
pub enum Mapped {
    /// The rows' groups were written.
    Done,
    /// The groups moved to the general path and were renumbered: old group `i` is now
    /// `order[i]` (accumulators must follow); the rows' groups were written.
    Renumbered(Vec<usize>),
}

impl GroupKeys {
    /// Keys of the types in `schema` (one field per key column).
    pub fn new(schema: SchemaRef) -> DfResult<GroupKeys> {
        let path = match SmallKeys::new(&schema) {
            Some(small) => Path::Small(Box::new(small)),
            None => Path::General(new_group_values(schema.clone(), &GroupOrdering::None)?),
        };
        Ok(GroupKeys {
            schema,
            path,
            groups_out: Vec::new(),
        })
    }

    /// Whether the fast path is in use.
    pub fn is_small(&self) -> bool {
        matches!(self.path, Path::Small(_))
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        match &self.path {
            Path::Small(s) => s.groups.len(),
            Path::General(g) => g.len(),
        }
    }

    /// Whether there is no group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        match &self.path {
            Path::Small(s) => s.table.len() * 4 + s.groups.capacity() * 4 + s.map.len() * 12,
            Path::General(g) => g.size(),
        }
    }

    /// The group of each selected row of `keys` (key columns of the batch) into `out`.
    pub fn map_rows(
        &mut self,
        keys: &[ArrayRef],
        sel: &Selection,
        out: &mut Vec<u32>,
    ) -> DfResult<Mapped> {
        let mut mapped = Mapped::Done;
        if let Path::Small(small) = &mut self.path {
            let before = small.groups.len();
            if small.map_rows(keys, sel, out) {
                return Ok(Mapped::Done);
            }
            // Move the groups that existed before this batch to the general path.
            let existing = small.arrays(before)?;
            let mut general = new_group_values(self.schema.clone(), &GroupOrdering::None)?;
            if before > 0 {
                general.intern(&existing, &mut self.groups_out)?;
            }
            mapped = Mapped::Renumbered(self.groups_out.clone());
            self.path = Path::General(general);
        }
        let Path::General(general) = &mut self.path else {
            unreachable!("the general path was just set")
        };
        let gathered: Vec<ArrayRef> = keys
            .iter()
            .map(|k| sel.gather(k))
            .collect::<DfResult<_>>()?;
        general.intern(&gathered, &mut self.groups_out)?;
        out.clear();
        out.extend(self.groups_out.iter().map(|g| *g as u32));
        Ok(mapped)
    }

    /// The key columns of every group, in group order; no group is left (the path stays).
    pub fn emit(&mut self) -> DfResult<Vec<ArrayRef>> {
        match &mut self.path {
            Path::Small(small) => {
                let arrays = small.arrays(small.groups.len())?;
                small.clear();
                Ok(arrays)
            }
            Path::General(general) => general.emit(EmitTo::All),
        }
    }
}
